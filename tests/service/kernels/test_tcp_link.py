"""The compiled TCP link against real sockets on loopback: it connects, sees a refusal, backs
off twice as long each time, comes up when the peer appears, and reconnects after a drop."""

from __future__ import annotations

import socket
import time

import pytest

from service.kernels import tcp_link as tl
from tests.support.net import free_port


def poll_until(link, states, timeout_s=5.0):
    state = tl.link_poll(link, time.monotonic_ns())  # compiled before the clock starts
    deadline = time.monotonic() + timeout_s
    while state not in states:
        assert time.monotonic() < deadline, f"link still {state} after {timeout_s} s"
        state = tl.link_poll(link, time.monotonic_ns())
    return state


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_link_connects_and_the_peer_sees_the_bytes_it_sends(family, host):
    with socket.socket(family) as server:
        server.bind((host, 0))
        server.listen()
        link = tl.new_tcp_link(host, server.getsockname()[1])
        assert poll_until(link, (tl.UP,)) == tl.UP
        peer, _ = server.accept()
        with peer, socket.socket(fileno=int(link.ivars[tl.L_FD])) as ours:
            ours.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            assert ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            ours.detach()  # the link owns it
        assert link.ivars[tl.L_CONNECTS] == 1
        tl.link_close(link)
        assert link.ivars[tl.L_FD] == -1


def test_a_refused_connect_backs_off_doubling_and_comes_up_when_the_peer_listens():
    port = free_port()
    link = tl.new_tcp_link("127.0.0.1", port, backoff_min_ns=1_000_000, backoff_max_ns=4_000_000)
    now = time.monotonic_ns()
    waits = []
    for _ in range(4):
        state = tl.link_poll(link, now)
        while state == tl.CONNECTING:  # loopback refuses at once, or on the next ask
            state = tl.link_poll(link, now)
        assert state == tl.DOWN
        assert link.ivars[tl.L_FD] == -1
        waits.append(int(link.ivars[tl.L_RETRY_AT_NS]) - now)
        assert tl.link_poll(link, now) == tl.DOWN  # not due: no attempt
        now = int(link.ivars[tl.L_RETRY_AT_NS])
    assert waits == [1_000_000, 2_000_000, 4_000_000, 4_000_000]
    assert link.ivars[tl.L_FAILURES] == 4
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert poll_until(link, (tl.UP,)) == tl.UP
        # the wait is back to the minimum: a drop retries after 1 ms
        server.accept()[0].close()
        tl.link_drop(link, now)
        assert link.ivars[tl.L_RETRY_AT_NS] - now == 1_000_000
        assert link.ivars[tl.L_DROPS] == 1
        assert poll_until(link, (tl.UP,)) == tl.UP
        assert link.ivars[tl.L_CONNECTS] == 2


def test_an_attempt_that_hangs_is_given_up_after_the_connect_timeout():
    # a listener whose backlog is full leaves the next SYN unanswered: the connect hangs
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for s in fillers:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        link = tl.new_tcp_link("127.0.0.1", port, connect_timeout_ns=50_000_000)
        start = time.monotonic_ns()
        state = tl.link_poll(link, start)
        if state == tl.UP:
            pytest.skip("this kernel accepted beyond the backlog: nothing hangs")
        assert state == tl.CONNECTING
        assert tl.link_poll(link, start + 10_000_000) == tl.CONNECTING
        assert tl.link_poll(link, start + 60_000_000) == tl.DOWN
        assert link.ivars[tl.L_FAILURES] == 1
        for s in fillers:
            s.close()
