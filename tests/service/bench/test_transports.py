"""The transport measures against real sockets: the numba and C round trips over UDP and TCP on
loopback and across a veth pair between two network namespaces, the ring's, and the paced
streams, which count what a lossy link (an nftables drop rule inside a namespace) leaves out.
Each spins two pinned processes for well under a second."""

from __future__ import annotations

import os
import shutil

import pytest

from service.bench import transports as t
from service.bench.netns import VethPair

ROUNDS = 2000


@pytest.fixture(scope="module")
def cpus() -> tuple[int, int]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip(f"two busy-polling sides need two CPUs, this process may use {allowed}")
    return allowed[0], allowed[1]


@pytest.fixture(scope="module")
def veth():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("network namespaces need root, ip and nft")
    with VethPair(f"lltest-{os.getpid()}", subnet=41) as pair:
        yield pair


def ordered(r: dict) -> bool:
    return 0 < r["min"] <= r["p50"] <= r["p90"] <= r["p99"] <= r["p999"] <= r["max"]


@pytest.mark.parametrize("proto", t.PROTOS)
def test_the_numba_round_trip_echoes_every_message_on_loopback(proto, cpus):
    r = t.measure_socket_rtt(proto, t.LOOPBACK, cpus, ROUNDS)
    assert r["lost"] == 0
    assert r["echoed"] == t.WARMUP_ROUNDS + ROUNDS + 1  # and the STOP
    assert ordered(r)


@pytest.mark.parametrize("proto", t.PROTOS)
def test_the_c_reference_round_trip_runs_the_same_route(proto, cpus):
    r = t.measure_c_rtt(proto, t.LOOPBACK, cpus, ROUNDS)
    assert r["lost"] == 0 and ordered(r)


def test_the_ring_round_trip_and_stream_deliver_every_message_in_order(cpus):
    assert ordered(t.measure_ring_rtt(cpus, ROUNDS))
    stream = t.measure_ring_stream(cpus, 200_000)
    assert stream["received"] == 200_000 and stream["lost"] == stream["out_of_order"] == 0


def test_round_trips_cross_the_veth_pair_in_numba_and_in_c(veth, cpus):
    route = t.veth_route(veth)
    for proto in t.PROTOS:
        assert t.measure_socket_rtt(proto, route, cpus, ROUNDS)["lost"] == 0
        assert t.measure_c_rtt(proto, route, cpus, ROUNDS)["lost"] == 0


def test_a_udp_stream_arrives_whole_until_the_link_drops_packets_and_the_loss_is_counted(
    veth, cpus
):
    route, count = t.veth_route(veth), 20_000
    # 50,000/s: the forced 8 MiB receive buffer holds ~150 ms of them, so a receiver a loaded
    # machine starves for a while still loses none
    whole = t.measure_stream("udp", route, cpus, count, 50_000)
    assert whole["received"] == count and whole["lost"] == whole["out_of_order"] == 0
    # 10 % of the datagrams dropped as they enter the receiving namespace
    veth.drop_incoming_udp(veth.b, 10)
    try:
        lossy = t.measure_stream("udp", route, cpus, count, 50_000)
    finally:
        dropped = veth.keep_all_udp(veth.b)
    assert lossy["received"] + lossy["lost"] == count
    assert lossy["lost"] == dropped  # what the link dropped, no more: the counter lost none
    assert 0.05 * count < lossy["lost"] < 0.3 * count, lossy  # 10 % expected: 2,000 +- 42
    # a TCP stream over the same route delivers everything, in order
    tcp = t.measure_stream("tcp", route, cpus, count, 0)
    assert tcp["received"] == count and tcp["out_of_order"] == 0
