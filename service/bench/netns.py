"""Two network namespaces joined by a veth pair: a route on which packets really cross a network
device, for the transport bench and the tests that run the exchange on "another host".

``VethPair`` creates namespaces ``<prefix>-a`` and ``<prefix>-b`` (``ip netns add``), a veth pair
with one end in each, an address on each end (only inside the namespaces: the machine's own
network is never touched) and brings the links up; leaving the ``with`` block deletes them. A
process joins one with ``enter`` (``setns(2)``, before it opens any socket) or is started in one
with ``ip netns exec NS`` (as ``run_in`` does). It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and
``ip``; ``VethPair`` raises ``NetnsError`` saying which is missing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000  # <sched.h>
NETNS_DIR = "/run/netns"


class NetnsError(RuntimeError):
    """The namespaces could not be made here (not root, no ``ip``, no veth in the kernel)."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or 'failed'}")


@dataclass(frozen=True)
class VethPair:
    """Namespaces ``a`` and ``b``; ``a_ip`` on a's end, ``b_ip`` on b's, one /30 between them."""

    prefix: str
    subnet: int = 0  # the third octet of 10.213.x.0/30: tests running side by side differ

    @property
    def a(self) -> str:
        return f"{self.prefix}-a"

    @property
    def b(self) -> str:
        return f"{self.prefix}-b"

    @property
    def device(self) -> str:
        """The veth end in ``a`` (in ``b`` it is ``lowlat-b``)."""
        return "lowlat-a"

    @property
    def a_ip(self) -> str:
        return f"10.213.{self.subnet}.1"

    @property
    def b_ip(self) -> str:
        return f"10.213.{self.subnet}.2"

    def __enter__(self) -> VethPair:
        if shutil.which("ip") is None:
            raise NetnsError("no `ip` command (apt-get install iproute2)")
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root (CAP_NET_ADMIN)")
        try:
            for ns in (self.a, self.b):
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            # each end is made in its namespace: its name is only that namespace's
            end_a, end_b = "lowlat-a", "lowlat-b"
            _ip("link", "add", end_a, "netns", self.a, "type", "veth", "peer", "name", end_b,
                "netns", self.b)  # fmt: skip
            for ns, end, ip in ((self.a, end_a, self.a_ip), (self.b, end_b, self.b_ip)):
                _ip("-n", ns, "addr", "add", f"{ip}/30", "dev", end)
                _ip("-n", ns, "link", "set", end, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        # deleting a namespace deletes the veth end in it, and with it the pair
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)

    def run_in(self, ns: str, *args: str) -> str:
        """Run ``args`` in ``ns`` and return its output (nft rules for loss, for example)."""
        cmd = ["ip", "netns", "exec", ns, *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise NetnsError(f"{' '.join(args)} in {ns}: {result.stderr.strip() or 'failed'}")
        return result.stdout

    def drop_incoming_udp(self, ns: str, percent: int) -> None:
        """Drop ``percent`` % of the UDP datagrams entering ``ns``, at random: a lossy link
        (``tc qdisc ... netem loss`` would do it in the qdisc, but netem is not in every
        kernel, and nftables is what the hosts' own firewall uses). Undone with
        ``keep_all_udp``."""
        self.run_in(ns, "nft", "add table inet lowlat_loss")
        self.run_in(
            ns, "nft", "add chain inet lowlat_loss in { type filter hook input priority -10 ; }"
        )
        self.run_in(
            ns,
            "nft",
            "add rule inet lowlat_loss in meta l4proto udp numgen random mod 100 "
            f"< {int(percent)} counter drop",
        )

    def keep_all_udp(self, ns: str) -> int:
        """Remove ``drop_incoming_udp``'s rule; how many datagrams it dropped."""
        listing = self.run_in(ns, "nft", "list table inet lowlat_loss")
        self.run_in(ns, "nft", "delete table inet lowlat_loss")
        words = listing.split()
        return int(words[words.index("packets") + 1])


def enter(ns: str | None) -> None:
    """Move the calling thread (a single-threaded process: the process) into namespace ``ns``;
    None stays where it is. Sockets opened afterwards belong to ``ns``."""
    if ns is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)
