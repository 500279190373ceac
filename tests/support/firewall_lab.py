"""Real packets through the rendered firewall, in throwaway network namespaces.

``python -m tests.support.firewall_lab host RULESET`` runs inside ``unshare --net`` (a fresh
namespace: this machine's own network and rules are never touched). It loads RULESET with nft,
twice (a reload must replace the table, not add to it), makes a second namespace for a client
joined by a veth pair, and prints JSON of what got through:

- ``inbound``: for each (client address, port) on the host's addresses, ``open`` or ``dropped``
  (a connect that times out; nothing answers with a reset under ``policy drop``);
- ``loopback``: the same, from the host to itself;
- ``outbound``: whether the host's own TCP connection and UDP exchange with the client work
  (the replies are the only inbound packets those need);
- ``market_data``: for each datagram a client address sends to the market-data port (of the
  host's addresses and of a multicast group the host has joined), ``arrived`` or ``dropped``;
- ``ruleset``: ``nft list table inet lowlat`` after the second load; ``tables``: every table,
  with the one another tool made before (the load must leave it alone).

The client side (``client`` mode) runs in the other namespace through ``nsenter``. IPv6 between
the two needs neighbour discovery to pass the firewall, so the IPv6 probes test that too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HOST4, HOST6 = "10.9.0.1", "fd09::1"
CLIENTS4 = ("10.9.0.2", "10.9.0.3")
CLIENTS6 = ("fd09::2", "fd09::3")
LISTEN_PORTS = (22, 8000, 9000)  # SSH, the telemetry port, and one no rule admits
ECHO_PORT = 7000  # the client's echo service, for the host's outbound traffic
TIMEOUT_S = 1.5
MARKET_PORT = 31001  # the exchange's market data, sent by the clients
GROUP4 = "239.192.0.1"  # a multicast group the host joins on the veth


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _out(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def probe(source: str, target: str, port: int) -> str:
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.bind((source, 0))
        try:
            sock.connect((target, port))
        except TimeoutError:
            return "dropped"
        except ConnectionRefusedError:
            return "refused"
        return "open"


def _probes(pairs: list[tuple[str, str, int]]) -> dict[str, str]:
    with ThreadPoolExecutor(len(pairs)) as pool:
        results = pool.map(lambda p: probe(*p), pairs)
        return {f"{s} -> [{t}]:{port}": r for (s, t, port), r in zip(pairs, results, strict=True)}


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 and IPv6
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    sock.listen(64)
    return sock


def _echo_tcp(tcp: socket.socket) -> None:
    while True:
        conn, _ = tcp.accept()
        with conn:
            conn.sendall(conn.recv(64))


def _udp_socket(address: str) -> socket.socket:
    # bound to the address the host sends to, so the reply comes from it (conntrack matches
    # a reply by its addresses; a wildcard socket might answer from the client's other one)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = socket.socket(family, socket.SOCK_DGRAM)
    udp.bind((address, ECHO_PORT))
    return udp


def _echo_udp(udp: socket.socket) -> None:
    while True:
        data, peer = udp.recvfrom(64)
        udp.sendto(data, peer)


def market_data_pairs() -> list[tuple[str, str]]:
    """(client address, target) of every market-data datagram a client sends."""
    pairs = [(c, t) for c in CLIENTS4 for t in (HOST4, GROUP4)]
    return pairs + [(c, HOST6) for c in CLIENTS6]


def _send_market_data() -> None:
    for source, target in market_data_pairs():
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            if target == GROUP4:  # out of the veth, from this source
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
            sock.sendto(source.encode(), (target, MARKET_PORT))


def client() -> None:
    """In the client's namespace: serve echo for the host, then send market data and probe the
    host's ports."""
    threading.Thread(target=_echo_tcp, args=(_listen(ECHO_PORT),), daemon=True).start()
    for address in (CLIENTS4[0], CLIENTS6[0]):
        threading.Thread(target=_echo_udp, args=(_udp_socket(address),), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()  # the host has done its outbound checks
    _send_market_data()  # read by the host after the probes below, which take seconds
    pairs = [(c, HOST4, p) for c in CLIENTS4 for p in LISTEN_PORTS]
    pairs += [(c, HOST6, p) for c in CLIENTS6 for p in LISTEN_PORTS]
    print(json.dumps(_probes(pairs)), flush=True)


def _outbound(target: str) -> dict[str, bool]:
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    works = {}
    try:
        with socket.create_connection((target, ECHO_PORT), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"tcp")
            works[f"tcp [{target}]:{ECHO_PORT}"] = sock.recv(64) == b"tcp"
    except OSError:
        works[f"tcp [{target}]:{ECHO_PORT}"] = False
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT_S)
        try:
            sock.sendto(b"udp", (target, ECHO_PORT))
            works[f"udp [{target}]:{ECHO_PORT}"] = sock.recv(64) == b"udp"
        except OSError:
            works[f"udp [{target}]:{ECHO_PORT}"] = False
    return works


def _client_namespace() -> subprocess.Popen[str]:
    """A second namespace, kept alive by a sleeping process, joined to this one by a veth pair."""
    keeper = subprocess.Popen(["unshare", "--net", "sleep", "120"], text=True)
    own = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True, text=True).stdout
    for _ in range(200):  # until unshare has made the namespace and exec'd sleep
        theirs = subprocess.run(
            ["readlink", f"/proc/{keeper.pid}/ns/net"], capture_output=True, text=True
        ).stdout
        if theirs and theirs != own:
            break
        time.sleep(0.01)
    _sh("ip", "link", "add", "fw0", "type", "veth", "peer", "name", "cl0")
    _sh("ip", "link", "set", "cl0", "netns", str(keeper.pid))
    return keeper


def _market_data_receivers() -> dict[str, socket.socket]:
    """Target -> a socket bound to the market-data port there (the group joined on fw0)."""
    receivers = {}
    for target in (HOST4, HOST6, GROUP4):
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((target, MARKET_PORT))
        if target == GROUP4:
            mreq = socket.inet_aton(GROUP4) + socket.inet_aton(HOST4)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
        receivers[target] = sock
    return receivers


def _market_data_report(receivers: dict[str, socket.socket]) -> dict[str, str]:
    arrived = set()
    for target, sock in receivers.items():
        while True:
            try:
                data, peer = sock.recvfrom(64)
            except BlockingIOError:
                break
            arrived.add((peer[0], target))
            assert data.decode() == peer[0]  # from whom it says
        sock.close()
    return {
        f"{s} -> {t}:{MARKET_PORT}": "arrived" if (s, t) in arrived else "dropped"
        for s, t in market_data_pairs()
    }


def host(ruleset: str) -> None:
    _sh("ip", "link", "set", "lo", "up")
    keeper = _client_namespace()
    try:
        _sh("ip", "addr", "add", f"{HOST4}/24", "dev", "fw0")
        _sh("ip", "addr", "add", f"{HOST6}/64", "dev", "fw0", "nodad")
        _sh("ip", "link", "set", "fw0", "up")
        inside = ["nsenter", "-t", str(keeper.pid), "-n"]
        for address in CLIENTS4:
            _sh(*inside, "ip", "addr", "add", f"{address}/24", "dev", "cl0")
        for address in CLIENTS6:
            _sh(*inside, "ip", "addr", "add", f"{address}/64", "dev", "cl0", "nodad")
        _sh(*inside, "ip", "link", "set", "cl0", "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        _sh("nft", "add", "table", "ip", "someone_else")  # another tool's rules
        _sh("nft", "-f", ruleset)
        _sh("nft", "-f", ruleset)  # a reload replaces the table
        listeners = [_listen(port) for port in LISTEN_PORTS]  # accepted by the kernel's backlog
        receivers = _market_data_receivers()
        peer = subprocess.Popen(
            [*inside, sys.executable, "-m", "tests.support.firewall_lab", "client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peer.stdin is not None and peer.stdout is not None
        assert peer.stdout.readline().strip() == "ready"
        outbound = {**_outbound(CLIENTS4[0]), **_outbound(CLIENTS6[0])}
        peer.stdin.write("go\n")
        peer.stdin.flush()
        inbound = json.loads(peer.stdout.readline())
        peer.kill()
        market_data = _market_data_report(receivers)
        loopback = _probes([(a, a, p) for a in ("127.0.0.1", "::1") for p in LISTEN_PORTS])
        listing = _out("nft", "list", "table", "inet", "lowlat")
        tables = _out("nft", "list", "tables")
        for sock in listeners:
            sock.close()
    finally:
        keeper.kill()
    report = {
        "inbound": inbound,
        "loopback": loopback,
        "outbound": outbound,
        "market_data": market_data,
        "ruleset": listing,
        "tables": tables,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client()
    else:
        host(sys.argv[2])
