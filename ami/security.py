"""The host's own gates, rendered from the tuning profile and checked by check-host: an nftables
firewall (table ``inet lowlat``, loaded at boot by ``lowlat-firewall.service``) and an sshd
drop-in (keys only; root login as the profile says).

Light (standard library and ``contracts``): the renderers read it; ``ami.check.security`` checks
what it renders.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from contracts.profile import TuningProfile

HEADER = (
    "Rendered by ami/security.py from the lowlat tuning profile; edit the profile, not this file."
)

FIREWALL_RULESET = "/etc/lowlat/firewall.nft"
FIREWALL_SCRIPT = "/usr/local/sbin/lowlat-firewall"
FIREWALL_UNIT_NAME = "lowlat-firewall.service"
FIREWALL_UNIT = f"/etc/systemd/system/{FIREWALL_UNIT_NAME}"
FIREWALL_STATE = "/run/lowlat-firewall"
LOADED_RULESET = f"{FIREWALL_STATE}/ruleset.nft"
LOADED_BOOT_ID = f"{FIREWALL_STATE}/boot-id"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
NFT = "/usr/sbin/nft"
TABLE = "inet lowlat"
SSH_PORT = 22

SSHD_CONFIG = "/etc/ssh/sshd_config"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-lowlat.conf"
SSHD = "/usr/sbin/sshd"

# Installed 0755 (ami.render.file_mode); the rest 0644: nothing here is secret, and check-host
# also runs as the service user (the telemetry API's /host), which must be able to read them.
SCRIPTS = frozenset({FIREWALL_SCRIPT})


def files(profile: TuningProfile) -> dict[str, str]:
    """The files of this module, keyed by absolute path on the host."""
    return {
        FIREWALL_RULESET: firewall_ruleset(profile),
        FIREWALL_SCRIPT: firewall_script(),
        FIREWALL_UNIT: firewall_unit(),
        SSHD_DROPIN: sshd_dropin(profile),
    }


# ----------------------------------------------------------------------------- the firewall


def networks(cidrs: Iterable[str], version: int) -> list[str]:
    """The CIDRs of one IP version, parsed again and merged, as ``ipaddress`` writes them: nft
    refuses overlapping intervals in a set, and a profile may list 10.0.0.0/8 and 10.1.0.0/16."""
    parsed = [ipaddress.ip_network(cidr, strict=True) for cidr in cidrs]
    if version == 4:
        v4 = [net for net in parsed if isinstance(net, ipaddress.IPv4Network)]
        return [str(net) for net in ipaddress.collapse_addresses(v4)]
    v6 = [net for net in parsed if isinstance(net, ipaddress.IPv6Network)]
    return [str(net) for net in ipaddress.collapse_addresses(v6)]


def _service(
    name: str, port: int, cidrs: tuple[str, ...], what: str
) -> tuple[list[str], list[str]]:
    """The sets and rules that admit ``port`` from ``cidrs``: one set per IP version in use."""
    sets: list[str] = []
    rules = [f"# {what} ({port}) from the profile's {name} only"]
    for version, family, match in ((4, "ipv4_addr", "ip"), (6, "ipv6_addr", "ip6")):
        nets = networks(cidrs, version)
        if not nets:
            continue
        set_name = f"{name.removesuffix('_cidrs')}_ipv{version}"
        elements = ", ".join(nets)
        sets += [
            f"\tset {set_name} {{",
            f"\t\ttype {family}",
            "\t\tflags interval",
            f"\t\telements = {{ {elements} }}",
            "\t}",
        ]
        rules.append(f"tcp dport {port} {match} saddr @{set_name} accept")
    if len(rules) == 1:
        rules[0] = f"# {what} ({port}): no {name} in the profile, so only from this host"
    return sets, rules


def _market_data(profile: TuningProfile) -> tuple[list[str], list[str]]:
    """The set and rules that admit the exchange's market data: UDP to its group (or this
    host's address) and port, from the exchange's ranges of the feed's IP version only; and
    for an IPv4 group, the IGMP queries that keep this host's membership alive. Nothing without
    an exchange. Recovery and order entry are this host's own TCP connections: their replies
    pass as established."""
    exchange = profile.exchange
    if exchange is None:
        return [], []
    feed = exchange.market_data
    version = feed.ip.version
    family, match = ("ipv4_addr", "ip") if version == 4 else ("ipv6_addr", "ip6")
    set_name = f"exchange_ipv{version}"
    nets = networks(exchange.cidrs, version)
    sets = [
        f"\tset {set_name} {{",
        f"\t\ttype {family}",
        "\t\tflags interval",
        f"\t\telements = {{ {', '.join(nets)} }}",
        "\t}",
    ]
    where = "multicast group" if feed.multicast else "address"
    rules = [
        f"# the exchange's market data (UDP {feed}, its {where}) from its ranges only",
        f"{match} daddr {feed.ip} udp dport {feed.port} {match} saddr @{set_name} accept",
    ]
    if exchange.group is not None and version == 4:
        rules += [
            "# IGMP queries, to which the kernel answers with this host's groups; an IGMP",
            "# router (AWS Transit Gateway: from 0.0.0.0) drops a member that never answers",
            "ip daddr 224.0.0.0/4 ip protocol igmp accept",
        ]
    return sets, rules


def firewall_ruleset(profile: TuningProfile) -> str:
    ssh_sets, ssh_rules = _service("ssh_cidrs", SSH_PORT, profile.ssh_cidrs, "SSH")
    api_sets, api_rules = _service(
        "telemetry_cidrs", profile.telemetry_port, profile.telemetry_cidrs, "telemetry API"
    )
    feed_sets, feed_rules = _market_data(profile)
    rules = [
        'iif "lo" accept',
        "ct state established,related accept",
        "# ICMP errors: path-MTU discovery (fragmentation needed, packet too big) and failures",
        "# of this host's own connections. Conntrack accepts them above as related; these also",
        "# pass the ones whose connection it no longer tracks (the kernel checks them itself).",
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
        "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }"
        " accept",
        "# IPv6 neighbour discovery and router advertisements, without which IPv6 stops; hop",
        "# limit 255 means sent on this link (RFC 4861). Multicast listener queries come from",
        "# a router's link-local address.",
        "ip6 hoplimit 255 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }"
        " accept",
        "ip6 saddr fe80::/10 icmpv6 type mld-listener-query accept",
        "# DHCPv6 replies come from the server's link-local address, not the multicast address",
        "# asked, so conntrack does not see them as replies. (DHCPv4 clients use raw sockets.)",
        "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept",
        "ct state invalid drop",
        *ssh_rules,
        *api_rules,
        *feed_rules,
        "# what is left is dropped by the policy; the counter shows how much",
        'counter comment "dropped by policy"',
    ]
    body = [
        *ssh_sets,
        *api_sets,
        *feed_sets,
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        *(f"\t\t{rule}" for rule in rules),
        "\t}",
    ]
    return (
        "\n".join(
            [
                f"# {HEADER}",
                "# The lowlat host firewall, loaded by lowlat-firewall.service: inbound is dropped",
                "# unless a rule below accepts it; outbound is untouched. nft -f applies the whole",
                "# file in one transaction: if any of it fails, nothing changes.",
                "",
                "# Make sure the table exists, then delete it: a reload replaces it whole, leaving",
                "# every other table alone.",
                f"table {TABLE}",
                f"delete table {TABLE}",
                "",
                f"table {TABLE} {{",
                *body,
                "}",
            ]
        )
        + "\n"
    )


def firewall_script() -> str:
    return f"""#!/bin/bash
# {HEADER}
# Loads the lowlat host firewall ({FIREWALL_RULESET}, table {TABLE}) for
# {FIREWALL_UNIT_NAME}, at boot and on reload. nft -f applies it in one transaction, so a
# file that fails to load leaves the rules in force as they were. What was loaded is kept in
# {FIREWALL_STATE} with this boot's id: check-host compares it with the installed file
# (the kernel's rules themselves take CAP_NET_ADMIN to read). LOWLAT_ROOT (unset on a host)
# prefixes every path, so the script can be rehearsed in a scratch tree.
set -euo pipefail
root="${{LOWLAT_ROOT:-}}"
state="$root{FIREWALL_STATE}"
mkdir -p "$state"
trap 'rm -f "$state/loading.nft"' EXIT

# nft reads a copy: the record below is then exactly what it loaded, whatever happens to the file
cp "$root{FIREWALL_RULESET}" "$state/loading.nft"
nft -f "$state/loading.nft"
mv -f "$state/loading.nft" "$root{LOADED_RULESET}"
cp "$root{BOOT_ID}" "$root{LOADED_BOOT_ID}"
echo "lowlat-firewall: table {TABLE} loaded from {FIREWALL_RULESET}"
"""


def firewall_unit() -> str:
    # Its own unit, not the distributions' nftables.service: that one reads /etc/nftables.conf
    # on Debian and Ubuntu (whose stock file starts with "flush ruleset", every tool's rules)
    # and /etc/sysconfig/nftables.conf on AL2023, so no one file and unit would do on all three.
    return f"""# {HEADER}
[Unit]
Description=lowlat host firewall (nftables table {TABLE})
Documentation=man:nft(8)
# Early, before any network is up, as the distributions' nftables.service is, but after the
# local file systems: the sandbox below is set up in a mount namespace, which fails
# (226/NAMESPACE) while / is still mounted read-only, as it is before systemd-remount-fs
# (found by booting a host in the lab: the rules were never loaded at boot).
DefaultDependencies=no
Wants=network-pre.target
After=local-fs.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={FIREWALL_SCRIPT}
ExecReload={FIREWALL_SCRIPT}
# Stopping the unit deletes lowlat's table (no other), so the unit's state and the rules agree;
# "-": a table already deleted by hand is no error.
ExecStop=-{NFT} delete table {TABLE}
# The record of what was loaded (check-host reads it) goes when the unit stops.
RuntimeDirectory=lowlat-firewall
RuntimeDirectoryMode=0755
# The sandbox (systemd.exec(5)): nft needs CAP_NET_ADMIN and a netlink socket, nothing more.
# No ProcSubset=pid: the script reads the boot id from /proc/sys.
CapabilityBoundingSet=CAP_NET_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_NETLINK AF_UNIX
IPAddressDeny=any
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
MemoryDenyWriteExecute=yes
LockPersonality=yes
UMask=0022
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=sysinit.target
"""


# ----------------------------------------------------------------------------- sshd


def sshd_settings(profile: TuningProfile) -> dict[str, str]:
    """What the drop-in sets, as sshd -T prints it (keys aside, which it prints lower-case)."""
    return {
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PermitRootLogin": profile.ssh_root_login,
    }


def sshd_dropin(profile: TuningProfile) -> str:
    lines = [
        f"# {HEADER}",
        "# Keys only: no password and no keyboard-interactive (PAM) prompt, and root as the",
        "# profile says (never with a password). sshd keeps the first value it reads for a key:",
        "# this file sorts before the images' own drop-ins (50-cloud-init.conf, ...).",
        *(f"{key} {value}" for key, value in sshd_settings(profile).items()),
    ]
    return "\n".join(lines) + "\n"
