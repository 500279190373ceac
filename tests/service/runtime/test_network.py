"""The feed's market-data socket: its receive buffer, and the one warning line when the kernel's
net.core.rmem_max gives it less (a burst beyond it is dropped and has to be recovered)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from contracts.network import RECEIVE_BUFFER_BYTES
from contracts.profile import DEFAULT_SYSCTLS
from service.config import from_dict
from service.runtime.network import open_market_data_socket
from tests.support.net import free_port


def test_the_socket_gets_the_buffer_rmem_max_allows_and_says_so_when_that_is_less(caplog):
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    config = from_dict(
        {"feed": {"source": "udp"}, "exchange": {"market_data": f"127.0.0.1:{free_port()}"}}
    )
    with caplog.at_level(logging.WARNING), open_market_data_socket(config) as sock:
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    assert got == min(rmem_max, RECEIVE_BUFFER_BYTES)
    warned = [r.getMessage() for r in caplog.records if "receive buffer" in r.getMessage()]
    if rmem_max < RECEIVE_BUFFER_BYTES:
        assert warned == [
            f"the market-data socket's receive buffer is {got >> 10} KiB, not "
            f"{RECEIVE_BUFFER_BYTES >> 10} KiB: net.core.rmem_max caps it, so a burst beyond it "
            f"is dropped and recovered (the tuning profile sets net.core.rmem_max = "
            f"{RECEIVE_BUFFER_BYTES})"
        ]
    else:
        assert warned == []


def test_the_tuning_profile_raises_rmem_max_to_what_the_feed_asks_for():
    assert int(DEFAULT_SYSCTLS["net.core.rmem_max"]) == RECEIVE_BUFFER_BYTES
