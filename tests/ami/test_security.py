"""The host firewall and the sshd drop-in: rendered from the profile, judged by the real tools
(nft, sshd, systemd-analyze), exercised with real packets in throwaway network namespaces, and
checked by check-host on crafted trees (tuned, untuned, half-tuned)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ami import render as r
from ami import security as sec
from ami.apply import apply
from ami.check import FAIL, NA, PASS
from ami.check.security import security_checks
from contracts.profile import HOST_OSES, TuningProfile
from tests.support.paths import REPO
from tests.support.systemd_tools import STOCK_UNITS, SYSTEMD_ANALYZE, exposure

PROFILE = TuningProfile.for_vcpus(4)
OPEN = TuningProfile.for_vcpus(
    4,
    ssh_cidrs=("203.0.113.0/24", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"),
    telemetry_cidrs=("198.51.100.7/32",),
    telemetry_port=9100,
)
NFT = shutil.which("nft") or "/usr/sbin/nft"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
IS_ROOT = os.geteuid() == 0
needs_nft = pytest.mark.skipif(
    not Path(NFT).exists(), reason="nft is not installed (scripts/system-deps installs nftables)"
)
needs_netns = pytest.mark.skipif(
    not (IS_ROOT and Path(NFT).exists() and shutil.which("unshare") and shutil.which("ip")),
    reason="needs root, nft, unshare and ip (iproute2) for throwaway network namespaces",
)
needs_sshd = pytest.mark.skipif(not Path(SSHD).exists(), reason="sshd is not installed")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)
MAX_EXPOSURE = 2.5  # as the service units (tests/ami/test_units.py)
# What the firewall unit names (it has no default dependencies).
UNIT_TARGETS = ("sysinit.target", "network-pre.target", "shutdown.target")


def ruleset(**overrides) -> str:
    return sec.firewall_ruleset(TuningProfile.for_vcpus(4, **overrides))


def rules(text: str) -> list[str]:
    """The ruleset's statements, comments and blank lines dropped."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# ----------------------------------------------------------------------------- the ruleset


def test_inbound_is_dropped_unless_a_rule_admits_it():
    got = rules(ruleset())
    assert got[:3] == ["table inet lowlat", "delete table inet lowlat", "table inet lowlat {"]
    assert "type filter hook input priority filter; policy drop;" in got
    assert got.index('iif "lo" accept') < got.index("ct state invalid drop")
    assert "ct state established,related accept" in got
    # no output or forward chain: what the host sends is untouched (agents, NTP, DNS, IMDS)
    assert not [line for line in got if "hook output" in line or "hook forward" in line]
    # without CIDRs, SSH and the telemetry port are reachable from this host only (loopback)
    assert not [line for line in got if "tcp dport" in line]
    assert not [line for line in got if line.startswith("set ")]


def test_icmp_a_host_needs():
    got = rules(ruleset())
    nd = next(line for line in got if "nd-neighbor-solicit" in line)
    assert "ip6 hoplimit 255" in nd and "nd-neighbor-advert" in nd and "nd-router-advert" in nd
    assert any("icmpv6 type {" in line and "packet-too-big" in line for line in got)  # PMTUD
    icmp = next(line for line in got if line.startswith("icmp type"))
    assert "destination-unreachable" in icmp  # IPv4 PMTUD: fragmentation needed
    assert "ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept" in got  # DHCPv6 replies


def test_ssh_and_telemetry_from_their_cidrs_by_family():
    text = sec.firewall_ruleset(OPEN)
    got = rules(text)
    # overlapping CIDRs are merged (nft refuses overlapping intervals in a set)
    assert "elements = { 10.0.0.0/8, 203.0.113.0/24 }" in got
    assert "elements = { 2001:db8::/32 }" in got
    assert "elements = { 198.51.100.7/32 }" in got
    assert [line for line in got if "tcp dport" in line] == [
        "tcp dport 22 ip saddr @ssh_ipv4 accept",
        "tcp dport 22 ip6 saddr @ssh_ipv6 accept",
        "tcp dport 9100 ip saddr @telemetry_ipv4 accept",  # IPv4 only: no IPv6 set or rule
    ]
    assert "set telemetry_ipv6 {" not in got
    # the services come after the ct and ICMP rules, before what the policy drops
    assert got.index("ct state invalid drop") < got.index("tcp dport 22 ip saddr @ssh_ipv4 accept")


def test_the_same_files_on_every_host_os():
    rendered = [sec.files(dataclasses.replace(OPEN, os=name)) for name in HOST_OSES]
    assert all(files == rendered[0] for files in rendered)


def test_market_data_from_the_exchanges_ranges_of_its_ip_version():
    profile = TuningProfile.for_vcpus(
        4,
        exchange_market_data="239.192.0.1:31001",
        exchange_recovery="10.50.0.10:31002",
        exchange_orders="10.50.0.10:31003",
        exchange_cidrs=("10.50.0.0/24", "10.50.1.0/24", "fd00:50::/64"),
    )
    got = rules(sec.firewall_ruleset(profile))
    assert "elements = { 10.50.0.0/23 }" in got  # merged; the IPv6 range sends no IPv4 feed
    assert "set exchange_ipv6 {" not in got
    feed = "ip daddr 239.192.0.1 udp dport 31001 ip saddr @exchange_ipv4 accept"
    assert [line for line in got if "udp dport" in line and "547" not in line] == [feed]
    assert "ip daddr 224.0.0.0/4 ip protocol igmp accept" in got  # the group's IGMP queries
    assert (
        got.index("ct state invalid drop")
        < got.index(feed)
        < got.index('counter comment "dropped by policy"')
    )
    # no exchange: no UDP port and no IGMP at all
    plain = rules(ruleset())
    assert not [line for line in plain if "igmp" in line or "udp dport 31001" in line]


def test_cidrs_are_parsed_again_never_pasted():
    profile = TuningProfile.for_vcpus(4, ssh_cidrs=("10.0.0.0/8",))
    # a value that got past the profile's grammar somehow: rendering refuses it
    object.__setattr__(profile, "ssh_cidrs", ('10.0.0.0/8 } ; flush ruleset ; {"',))
    with pytest.raises(ValueError):
        sec.firewall_ruleset(profile)
    # what reaches the file is ipaddress's own spelling of the network (the profile refuses
    # any other spelling, tests/contracts/test_cidrs.py; this one got past it somehow)
    object.__setattr__(profile, "ssh_cidrs", ("2001:DB8:0:0::/64",))
    assert "elements = { 2001:db8::/64 }" in sec.firewall_ruleset(profile)


@needs_nft
@pytest.mark.parametrize(
    "profile",
    [
        PROFILE,
        OPEN,
        TuningProfile.for_vcpus(  # the widest ranges a profile admits (contracts.profile)
            4,
            ssh_cidrs=("1.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "2001:db8::/32", "fc00::/7"),
            telemetry_cidrs=("fc00::/7",),
        ),
        TuningProfile.for_vcpus(2, ssh_cidrs=("192.0.2.1/32",), telemetry_port=22),
        TuningProfile.for_vcpus(
            4,
            exchange_market_data="[ff15::1]:31001",
            exchange_recovery="10.50.0.10:31002",
            exchange_orders="[fd00:50::10]:31003",
            exchange_cidrs=("10.50.0.0/24", "fd00:50::/64"),
        ),
    ],
    ids=["default", "cidrs", "widest", "telemetry-on-22", "exchange-ipv6"],
)
def test_nft_accepts_the_ruleset(tmp_path, profile):
    path = tmp_path / "firewall.nft"
    path.write_text(sec.firewall_ruleset(profile))
    result = subprocess.run([NFT, "-c", "-f", path], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


@needs_nft
def test_nft_check_catches_a_broken_ruleset(tmp_path):
    path = tmp_path / "firewall.nft"
    path.write_text(ruleset().replace("ct state invalid drop", "ct state bogus"))
    result = subprocess.run([NFT, "-c", "-f", path], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Error" in result.stderr  # the check above can fail


# ----------------------------------------------------------------------------- real packets


def lab(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "firewall.nft"
    path.write_text(text)
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "tests.support.firewall_lab", "host", path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


LAB_PROFILE = TuningProfile.for_vcpus(
    4, ssh_cidrs=("10.9.0.2/32", "fd09::2/128"), telemetry_cidrs=("10.9.0.3/32", "fd09::3/128")
)


@needs_netns
def test_packets_through_the_loaded_firewall(tmp_path):
    got = lab(tmp_path, sec.firewall_ruleset(LAB_PROFILE))
    admitted = {"10.9.0.2": 22, "10.9.0.3": 8000, "fd09::2": 22, "fd09::3": 8000}
    for probe, result in got["inbound"].items():
        source, _, port = probe.partition(" -> ")
        want = "open" if admitted[source] == int(port.rsplit(":", 1)[1]) else "dropped"
        assert result == want, probe  # IPv6 "open" also needs neighbour discovery to pass
    assert set(got["loopback"].values()) == {"open"}
    assert all(got["outbound"].values()), got["outbound"]  # replies to the host's own traffic
    # loaded twice: one table, not two copies of each rule; another tool's table left alone
    assert got["ruleset"].count("chain input") == 1
    assert got["ruleset"].count("tcp dport 22 ip saddr @ssh_ipv4 accept") == 1
    assert "table ip someone_else" in got["tables"]
    # no exchange in the profile: no market data from anyone, unicast or multicast
    assert set(got["market_data"].values()) == {"dropped"}, got["market_data"]


EXCHANGE = {  # the lab's client 10.9.0.2 (and fd09::2) is the exchange; 10.9.0.3 is not
    "exchange_recovery": "10.9.0.2:31002",
    "exchange_orders": "10.9.0.2:31003",
    "exchange_cidrs": ("10.9.0.2/32", "fd09::2/128"),
}


@needs_netns
@pytest.mark.parametrize(
    ("feed", "arrives"),
    [
        ("239.192.0.1:31001", {"10.9.0.2 -> 239.192.0.1:31001"}),
        ("10.9.0.1:31001", {"10.9.0.2 -> 10.9.0.1:31001"}),
        ("[fd09::1]:31001", {"fd09::2 -> fd09::1:31001"}),
    ],
    ids=["multicast", "unicast", "ipv6"],
)
def test_market_data_passes_from_the_exchange_only(tmp_path, feed, arrives):
    profile = dataclasses.replace(LAB_PROFILE, exchange_market_data=feed, **EXCHANGE)
    got = lab(tmp_path, sec.firewall_ruleset(profile))
    # from the exchange's range, to the feed's address and port: through; from 10.9.0.3 (not
    # the exchange), or to another of the host's addresses on the same port: dropped
    assert {probe for probe, result in got["market_data"].items() if result == "arrived"} == arrives
    assert len(got["market_data"]) == 6
    # and nothing else changed: SSH and telemetry as before, the host's own traffic works
    assert got["inbound"]["10.9.0.2 -> [10.9.0.1]:22"] == "open"
    assert got["inbound"]["10.9.0.2 -> [10.9.0.1]:9000"] == "dropped"
    assert all(got["outbound"].values()), got["outbound"]


@needs_netns
def test_the_lab_sees_ipv6_die_without_neighbour_discovery(tmp_path):
    text = sec.firewall_ruleset(LAB_PROFILE)
    broken = "\n".join(line for line in text.splitlines() if "nd-neighbor-solicit" not in line)
    got = lab(tmp_path, broken + "\n")
    assert got["inbound"]["fd09::2 -> [fd09::1]:22"] == "dropped"
    assert got["inbound"]["10.9.0.2 -> [10.9.0.1]:22"] == "open"


# ----------------------------------------------------------------------------- loading it


def boot_tree(root: Path, boot_id: str = "4c6b0d4e-boot-one") -> Path:
    apply(r.render(PROFILE), root)
    (root / "proc/sys/kernel/random").mkdir(parents=True)
    (root / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
    return root


def load_script(root: Path) -> subprocess.CompletedProcess[str]:
    """The installed lowlat-firewall, for real, in a throwaway network namespace."""
    return subprocess.run(
        ["unshare", "--net", "bash", root / sec.FIREWALL_SCRIPT.lstrip("/")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOWLAT_ROOT": str(root)},
    )


@needs_netns
def test_the_script_loads_and_records_what_it_loaded(tmp_path):
    root = boot_tree(tmp_path / "root")
    result = load_script(root)
    assert result.returncode == 0, result.stderr
    state = root / sec.FIREWALL_STATE.lstrip("/")
    assert (state / "ruleset.nft").read_text() == sec.firewall_ruleset(PROFILE)
    assert (state / "boot-id").read_text() == "4c6b0d4e-boot-one\n"
    assert sorted(p.name for p in state.iterdir()) == ["boot-id", "ruleset.nft"]
    assert check(root, "firewall").status == PASS

    # apply with other CIDRs: installed, but what is loaded is the old ruleset until a reload
    apply(r.render(OPEN), root)
    assert check(root, "firewall", OPEN).observed == "installed, an older ruleset loaded"
    assert load_script(root).returncode == 0
    assert check(root, "firewall", OPEN).status == PASS

    # a ruleset that does not load: the script fails and the record stays what is in force
    installed = root / sec.FIREWALL_RULESET.lstrip("/")
    installed.write_text(installed.read_text().replace("policy drop", "policy bogus"))
    result = load_script(root)
    assert result.returncode != 0 and "bogus" in result.stderr
    assert (state / "ruleset.nft").read_text() == sec.firewall_ruleset(OPEN)
    assert sorted(p.name for p in state.iterdir()) == ["boot-id", "ruleset.nft"]


@needs_systemd_analyze
def test_firewall_unit_verifies_and_is_sandboxed(tmp_path):
    apply(r.render(PROFILE), tmp_path)
    nft = tmp_path / sec.NFT.lstrip("/")
    nft.parent.mkdir(parents=True)
    nft.write_text("#!/bin/sh\nexit 0\n")
    nft.chmod(0o755)
    stock = tmp_path / "usr/lib/systemd/system"
    stock.mkdir(parents=True)
    for name in UNIT_TARGETS:
        if not (STOCK_UNITS / name).is_file():
            pytest.skip(f"{STOCK_UNITS / name} is not installed")
        shutil.copy(STOCK_UNITS / name, stock / name)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={tmp_path}", sec.FIREWALL_UNIT_NAME],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert exposure(tmp_path / sec.FIREWALL_UNIT.lstrip("/")) <= MAX_EXPOSURE


def test_unit_loads_early_and_stop_removes_only_its_table():
    unit = sec.firewall_unit()
    assert "DefaultDependencies=no\n" in unit and "Before=network-pre.target" in unit
    assert "WantedBy=sysinit.target" in unit
    assert f"ExecStart={sec.FIREWALL_SCRIPT}\n" in unit
    assert f"ExecReload={sec.FIREWALL_SCRIPT}\n" in unit
    assert "ExecStop=-/usr/sbin/nft delete table inet lowlat\n" in unit
    assert "RuntimeDirectory=lowlat-firewall\n" in unit  # the record goes when it stops
    assert "CapabilityBoundingSet=CAP_NET_ADMIN\n" in unit


NAMESPACE_SETTINGS = ("ProtectSystem=", "ProtectHome=", "PrivateDevices=", "PrivateTmp=",
                      "ReadWritePaths=", "RuntimeDirectory=")  # fmt: skip


@pytest.mark.parametrize("os_name", HOST_OSES)
def test_early_units_with_a_sandbox_wait_for_a_writable_root(os_name):
    """A unit without the default dependencies runs before / is remounted read-write; one that
    needs a mount namespace then fails with 226/NAMESPACE (the host lab's boot found it in
    lowlat-firewall.service). Every such unit we render orders itself after local-fs.target."""
    files = r.render(dataclasses.replace(PROFILE, os=os_name))
    early = {
        path: text
        for path, text in files.items()
        if path.endswith(".service") and "DefaultDependencies=no" in text
    }
    assert sec.FIREWALL_UNIT in early
    for path, text in early.items():
        if any(f"\n{setting}" in text for setting in NAMESPACE_SETTINGS):
            assert "\nAfter=local-fs.target" in text, path


def test_apply_installs_them_with_their_modes(tmp_path):
    apply(r.render(OPEN), tmp_path)
    for path, mode in (
        (sec.FIREWALL_RULESET, 0o644),
        (sec.FIREWALL_UNIT, 0o644),
        (sec.SSHD_DROPIN, 0o644),  # check-host also runs as the service user: world-readable
        (sec.FIREWALL_SCRIPT, 0o755),
    ):
        installed = tmp_path / path.lstrip("/")
        assert installed.stat().st_mode & 0o777 == mode, path
        assert installed.read_text() == sec.files(OPEN)[path]


# ----------------------------------------------------------------------------- sshd


def test_sshd_dropin():
    assert rules(sec.sshd_dropin(PROFILE)) == [
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
    ]
    keys = TuningProfile.for_vcpus(4, ssh_root_login="prohibit-password")
    assert "PermitRootLogin prohibit-password" in rules(sec.sshd_dropin(keys))
    # sorts before the images' own drop-ins: sshd keeps the first value it reads
    assert Path(sec.SSHD_DROPIN).name < "50-cloud-init.conf"
    assert Path(sec.SSHD_DROPIN).name < "50-redhat.conf"


# Debian 12's and Ubuntu 24.04's stock sshd_config, as far as it matters here (AL2023's has the
# same Include at the top): the Include comes first, then the distribution's own settings.
STOCK_SSHD_CONFIG = """\
# This is the sshd server system-wide configuration file.
Include /etc/ssh/sshd_config.d/*.conf
#PermitRootLogin prohibit-password
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
"""


def sshd_tree(root: Path, profile: TuningProfile = PROFILE, main: str = STOCK_SSHD_CONFIG) -> Path:
    apply(r.render(profile), root)
    (root / "etc/ssh/sshd_config").write_text(main)
    (root / "usr/sbin").mkdir(parents=True, exist_ok=True)
    (root / "usr/sbin/sshd").write_text("")
    return root


def sshd_effective(root: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``sshd -t`` then ``sshd -T`` on the tree's config, with its paths moved into the tree and a
    throwaway host key: this machine's own sshd config is never read."""
    key = tmp_path / "host_key"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True, timeout=60
        )
    main = (root / "etc/ssh/sshd_config").read_text().replace("/etc/ssh/", f"{root}/etc/ssh/")
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {key}\n{main}")
    if IS_ROOT:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory (as root)
    test = subprocess.run([SSHD, "-t", "-f", config], capture_output=True, text=True, timeout=60)
    dump = subprocess.run([SSHD, "-T", "-f", config], capture_output=True, text=True, timeout=60)
    effective = {}
    for line in dump.stdout.splitlines():
        key_, _, value = line.partition(" ")
        effective[key_] = value
    return test, effective


@needs_sshd
@pytest.mark.parametrize("root_login", ["no", "prohibit-password"])
def test_sshd_takes_the_dropin(tmp_path, root_login):
    profile = TuningProfile.for_vcpus(4, ssh_root_login=root_login)
    root = sshd_tree(tmp_path / "root", profile)
    # an image's own drop-in that says otherwise, read after ours
    (root / "etc/ssh/sshd_config.d/50-cloud-init.conf").write_text("PasswordAuthentication yes\n")
    test, effective = sshd_effective(root, tmp_path)
    assert (test.returncode, test.stderr) == (0, ""), test.stderr
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    # sshd -T prints prohibit-password by its older name on OpenSSH before 9.x
    aliases = {"no": {"no"}, "prohibit-password": {"prohibit-password", "without-password"}}
    assert effective["permitrootlogin"] in aliases[root_login]
    assert check(root, "sshd", profile).status == PASS


@needs_sshd
def test_sshd_check_agrees_with_sshd_on_an_earlier_dropin(tmp_path):
    root = sshd_tree(tmp_path / "root")
    (root / "etc/ssh/sshd_config.d/05-vendor.conf").write_text("PasswordAuthentication yes\n")
    _, effective = sshd_effective(root, tmp_path)
    assert effective["passwordauthentication"] == "yes"  # sshd: the first value wins
    got = check(root, "sshd")
    assert got.status == FAIL
    assert "05-vendor.conf sets PasswordAuthentication yes first" in got.observed


@needs_sshd
def test_sshd_rejects_a_broken_dropin(tmp_path):
    root = sshd_tree(tmp_path / "root")
    (root / sec.SSHD_DROPIN.lstrip("/")).write_text("PasswordAuthentication maybe\n")
    test, _ = sshd_effective(root, tmp_path)
    assert test.returncode != 0  # the sshd -t above can fail


# ----------------------------------------------------------------------------- check-host


def check(root: Path, name: str, profile: TuningProfile = PROFILE):
    return next(c for c in security_checks(root, profile) if c.name == name)


def tuned(root: Path) -> Path:
    """A host as apply and one boot leave it: files installed, the firewall loaded."""
    boot_tree(root)
    sshd_tree(root)
    state = root / sec.FIREWALL_STATE.lstrip("/")
    state.mkdir(parents=True)
    (state / "ruleset.nft").write_text(sec.firewall_ruleset(PROFILE))
    (state / "boot-id").write_text("4c6b0d4e-boot-one\n")
    return root


def test_tuned_host_passes(tmp_path):
    checks = security_checks(tuned(tmp_path), PROFILE)
    assert [(c.name, c.status) for c in checks] == [("firewall", PASS), ("sshd", PASS)]
    assert checks[0].observed == "installed and loaded"
    assert checks[1].observed == (
        "PasswordAuthentication no, KbdInteractiveAuthentication no, PermitRootLogin no"
    )


def test_untuned_host_fails(tmp_path):
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/sshd_config").write_text(STOCK_SSHD_CONFIG)
    checks = {c.name: c for c in security_checks(tmp_path, PROFILE)}
    assert (checks["firewall"].status, checks["firewall"].observed) == (FAIL, "missing")
    assert (checks["sshd"].status, checks["sshd"].observed) == (FAIL, "missing")


def test_no_sshd_at_all_is_not_applicable(tmp_path):
    assert check(tmp_path, "sshd").status == NA


@pytest.mark.parametrize(
    ("damage", "observed"),
    [
        ("not loaded", "installed, not loaded"),
        ("older loaded", "installed, an older ruleset loaded"),
        ("earlier boot", "installed, loaded at an earlier boot"),
        ("other profile", "differs from the profile"),
    ],
)
def test_half_tuned_firewall_fails(tmp_path, damage, observed):
    root = tuned(tmp_path)
    state = root / sec.FIREWALL_STATE.lstrip("/")
    if damage == "not loaded":  # the unit failed or never ran: systemd removed its directory
        shutil.rmtree(state)
    elif damage == "older loaded":  # apply changed the file; nobody reloaded the unit
        (state / "ruleset.nft").write_text(sec.firewall_ruleset(OPEN))
    elif damage == "earlier boot":
        (root / "proc/sys/kernel/random/boot_id").write_text("a-later-boot\n")
    else:  # the host was tuned for other CIDRs than the profile check-host judges it by
        (root / sec.FIREWALL_RULESET.lstrip("/")).write_text(sec.firewall_ruleset(OPEN))
    got = check(root, "firewall")
    assert (got.status, got.observed) == (FAIL, observed), got.detail


def test_without_a_boot_id_the_record_in_run_is_enough(tmp_path):
    root = tuned(tmp_path)
    (root / "proc/sys/kernel/random/boot_id").unlink()
    got = check(root, "firewall")
    assert got.status == PASS and "cleared at boot" in got.detail


@pytest.mark.parametrize(
    ("main", "earlier", "observed"),
    [
        ("PasswordAuthentication no\n", None, "drop-in not included"),
        (
            "Match User backup\n" + STOCK_SSHD_CONFIG,  # the Include is inside a Match block
            None,
            "drop-in not included",
        ),
        (
            "PermitRootLogin yes\n" + STOCK_SSHD_CONFIG,
            None,
            "/etc/ssh/sshd_config sets PermitRootLogin yes first",
        ),
        (
            STOCK_SSHD_CONFIG,
            "# a vendor's\nPasswordAuthentication\t=\tyes\n",  # sshd takes "=" and tabs too
            "/etc/ssh/sshd_config.d/01-old.conf sets PasswordAuthentication yes first",
        ),
        (
            STOCK_SSHD_CONFIG,
            "ChallengeResponseAuthentication yes\n",  # the old name of the same key
            "/etc/ssh/sshd_config.d/01-old.conf sets KbdInteractiveAuthentication yes first",
        ),
    ],
)
def test_half_tuned_sshd_fails(tmp_path, main, earlier, observed):
    root = tuned(tmp_path)
    (root / "etc/ssh/sshd_config").write_text(main)
    if earlier is not None:
        (root / "etc/ssh/sshd_config.d/01-old.conf").write_text(earlier)
    got = check(root, "sshd")
    assert (got.status, got.observed) == (FAIL, observed), got.detail


def test_an_earlier_file_that_agrees_is_fine(tmp_path):
    root = tuned(tmp_path)
    (root / "etc/ssh/sshd_config.d/01-same.conf").write_text("passwordauthentication NO\n")
    (root / "etc/ssh/sshd_config").write_text("Include sshd_config.d/*.conf\n")  # relative
    assert check(root, "sshd").status == PASS
    keys = TuningProfile.for_vcpus(4, ssh_root_login="prohibit-password")
    apply(r.render(keys), root)
    (root / "etc/ssh/sshd_config.d/01-same.conf").write_text("PermitRootLogin without-password\n")
    assert check(root, "sshd", keys).status == PASS  # the old name of the same value


def test_a_changed_dropin_fails(tmp_path):
    root = tuned(tmp_path)
    dropin = root / sec.SSHD_DROPIN.lstrip("/")
    dropin.write_text(dropin.read_text().replace("PasswordAuthentication no", "#"))
    got = check(root, "sshd")
    assert (got.status, got.observed) == (FAIL, "differs from the profile")
    assert "line 5" in got.detail


def test_a_file_this_user_may_not_read_is_unknown_not_missing(tmp_path, monkeypatch):
    # AL2023 keeps sshd_config 0600: the telemetry API's /host runs check-host as the service
    # user. (These tests run as root, which reads anything, hence the stand-in.)
    root = tuned(tmp_path)
    real = Path.read_text

    def read_text(path: Path, *args, **kwargs) -> str:
        if path == root / "etc/ssh/sshd_config":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    got = check(root, "sshd")
    assert (got.status, got.observed) == (NA, "unreadable")
    assert str(root / "etc/ssh/sshd_config") in got.detail
    assert check(root, "firewall").status == PASS


@pytest.mark.parametrize("os_name", HOST_OSES)
def test_images_and_user_data_install_nft_and_enable_the_firewall(os_name):
    from ami import imagebuilder as IB
    from ami.hostos import host_os

    profile = dataclasses.replace(PROFILE, os=os_name)
    assert "nftables" in host_os(profile).packages
    enable = next(
        step["inputs"]["commands"][0]
        for phase in IB.component_data(profile)["phases"]
        for step in phase["steps"]
        if step["name"] == "EnableServices"
    )
    assert enable.startswith("systemctl enable ") and sec.FIREWALL_UNIT_NAME in enable.split()
    pytest.importorskip("aws_cdk")
    from infra.host import user_data_script

    script = user_data_script(profile, "userdata")
    assert any(
        line.startswith("systemctl enable ") and sec.FIREWALL_UNIT_NAME in line.split()
        for line in script
    )


@needs_nft
@needs_sshd
def test_apply_for_debian12_renders_a_firewall_and_sshd_dropin_that_pass_their_checks(tmp_path):
    """``python -m ami apply --os debian12``, the lab's path: its firewall passes ``nft -c`` and
    its sshd drop-in passes ``sshd -t`` and takes effect (``sshd -T``) under Debian's stock
    sshd_config."""
    root = tmp_path / "root"
    result = subprocess.run(
        [sys.executable, "-m", "ami", "apply", "--root", root, "--vcpus", "4", "--os", "debian12"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ruleset = root / sec.FIREWALL_RULESET.lstrip("/")
    nft = subprocess.run([NFT, "-c", "-f", ruleset], capture_output=True, text=True, timeout=60)
    assert (nft.returncode, nft.stderr) == (0, "")
    (root / "etc/ssh/sshd_config").write_text(STOCK_SSHD_CONFIG)
    test, effective = sshd_effective(root, tmp_path)
    assert (test.returncode, test.stderr) == (0, ""), test.stderr
    assert effective["passwordauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
