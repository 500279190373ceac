"""Order entry over real TCP: the compiled gateway side (``kernels/order_entry.py``) against the
exchange's service. Orders get their one report each; a connection the exchange cuts after
every other order is reconnected and reconciled with none lost and none entered twice; an
exchange that is down at the start is waited for, and what was entered meanwhile goes once."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from contracts.records import BUY, CANCELLED, FILL, FILLED, ORDER, SELL
from contracts.wire import HEARTBEAT, LOGIN
from service.exchange.order_entry_service import OrderEntryService, message
from service.kernels import order_entry as oe_k
from service.kernels.market_packets import session_bytes
from service.kernels.tcp_link import new_tcp_link
from tests.support.local_ring import drain, local_ring
from tests.support.net import free_port

SESSION = session_bytes("LOWLAT0001")


def buys_fill_sells_do_not(instrument, side, qty, price):
    return (qty, price) if side == BUY else (0, 0)


def orders(n: int) -> np.ndarray:
    out = np.zeros(n, ORDER)
    out["order_id"] = np.arange(1, n + 1)
    out["instrument"] = np.arange(n) % 2
    out["side"] = np.where(np.arange(n) % 3 == 2, SELL, BUY)
    out["qty"] = 1 + np.arange(n) % 5
    out["price"] = 10_000 + np.arange(n)
    return out


class Gateway:
    def __init__(self, port: int) -> None:
        link = new_tcp_link("127.0.0.1", port, 1_000_000, 5_000_000)
        self.oe = oe_k.new_order_entry(link, SESSION, 64, heartbeat_ns=200_000_000)
        self.fills = local_ring(256, FILL)
        self.reports: list = []
        self.poll()  # compiled (or loaded) before any wait is timed

    def poll(self) -> int:
        state = oe_k.order_entry_poll(self.oe, self.fills, time.monotonic_ns())
        self.reports += list(drain(self.fills))
        return state

    def until(self, done, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, self.oe.ivars
            self.poll()

    def enter(self, order) -> None:
        assert oe_k.order_entry_enter(self.oe, order, time.monotonic_ns())


def test_each_order_gets_one_report_from_the_exchange():
    with OrderEntryService(SESSION.tobytes(), 2, buys_fill_sells_do_not) as service:
        gw = Gateway(service.address[1])
        gw.until(lambda: gw.poll() == oe_k.SESSION_READY)
        sent = orders(6)
        for order in sent:
            gw.enter(order)
        gw.until(lambda: len(gw.reports) == 6)
    by_id = {int(r["order_id"]): r for r in gw.reports}
    for order in sent:
        r = by_id[int(order["order_id"])]
        if order["side"] == BUY:
            assert (r["status"], r["qty"], r["price"]) == (FILLED, order["qty"], order["price"])
        else:
            assert (r["status"], r["qty"]) == (CANCELLED, 0)
    assert gw.oe.ivars[oe_k.O_OPEN] == 0 and service.orders == 6


@pytest.mark.parametrize("every", [1, 2, 5])
def test_a_connection_cut_mid_run_is_reconciled_none_lost_none_entered_twice(every):
    with OrderEntryService(
        SESSION.tobytes(), 2, buys_fill_sells_do_not, disconnect_every=every
    ) as service:
        gw = Gateway(service.address[1])
        gw.until(lambda: gw.poll() == oe_k.SESSION_READY)
        sent = orders(40)
        for k, order in enumerate(sent):
            gw.enter(order)
            if k % 3 == 0:
                gw.poll()
        gw.until(lambda: len(gw.reports) == 40)
        gw.until(lambda: gw.poll() == oe_k.SESSION_READY)
    ids = sorted(int(r["order_id"]) for r in gw.reports)
    assert ids == list(range(1, 41))  # each order ended exactly once
    assert service.orders == 40 and service.duplicate_enters == 0  # none entered twice
    assert service.logins >= 40 // every  # it really was cut and logged in again
    assert gw.oe.ivars[oe_k.O_BROKEN] >= 40 // every - 1


def test_an_exchange_down_at_the_start_is_waited_for():
    port = free_port()
    gw = Gateway(port)
    for order in orders(3):
        gw.enter(order)  # held: nobody to send them to
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:
        assert gw.poll() == oe_k.SESSION_DOWN
    with OrderEntryService(
        SESSION.tobytes(), 2, buys_fill_sells_do_not, ("127.0.0.1", port)
    ) as service:
        gw.until(lambda: len(gw.reports) == 3)
    assert service.orders == 3 and service.duplicate_enters == 0
    assert gw.oe.ivars[oe_k.O_RESENT] == 0  # they had never gone: sent, not re-sent


def test_an_order_the_exchange_rejects_ends_unfilled_and_is_counted():
    with OrderEntryService(SESSION.tobytes(), 2, buys_fill_sells_do_not) as service:
        gw = Gateway(service.address[1])
        gw.until(lambda: gw.poll() == oe_k.SESSION_READY)
        bad = orders(1)[0].copy()
        bad["instrument"] = 7  # the exchange lists 2
        gw.enter(bad)
        gw.until(lambda: len(gw.reports) == 1)
    (report,) = gw.reports
    assert (report["status"], report["qty"]) == (CANCELLED, 0)
    assert gw.oe.ivars[oe_k.O_REJECTED] == 1 and gw.oe.ivars[oe_k.O_OPEN] == 0


@pytest.mark.parametrize(
    "first",
    [
        message(LOGIN, b"OTHERSESS ", 1),  # another session
        b"\x00\x03Lxx",  # a login of the wrong size
        message(HEARTBEAT, 0),  # not a login
    ],
)
def test_a_client_that_does_not_log_in_to_this_session_is_closed(first):
    with (
        OrderEntryService(SESSION.tobytes(), 2, buys_fill_sells_do_not) as service,
        socket.create_connection(service.address, timeout=5) as conn,
    ):
        conn.sendall(first)
        assert conn.recv(100) == b""  # closed, nothing said
    assert service.logins == 0


def test_a_replay_from_a_number_sends_what_followed_it_then_a_heartbeat():
    with OrderEntryService(SESSION.tobytes(), 2, buys_fill_sells_do_not) as service:
        gw = Gateway(service.address[1])
        gw.until(lambda: gw.poll() == oe_k.SESSION_READY)
        for order in orders(3):  # buy, buy, sell: A E, A E, A C = 6 messages
            gw.enter(order)
        gw.until(lambda: len(gw.reports) == 3)
        with socket.create_connection(service.address, timeout=5) as conn:
            conn.sendall(message(LOGIN, SESSION.tobytes(), 4))  # from the 4th on
            data = b""
            while len(data) < 3 * 2 + 2 + 11:  # at least ...E (ACCEPTED, CANCELED) + heartbeat
                chunk = conn.recv(4096)
                assert chunk
                data += chunk
    kinds = []
    while data:
        n = int.from_bytes(data[:2], "big")
        kinds.append(chr(data[2]))
        data = data[2 + n :]
    assert kinds == ["E", "A", "C", "H"]
