"""`trading-service run` with ``[feed] source = "udp"`` against `trading-service exchange`, both
real processes on loopback: the session's market data crosses real UDP sockets, the packets the
exchange leaves out on purpose are recovered over TCP, the engine trades on what arrives, and
the run ends when the exchange ends its session. The stages busy-poll on the last CPU; the
exchange sleeps between packets on the others (``service.exchange.venue``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.net import free_port, stop_process

CLI = [sys.executable, "-m", "service.cli"]
MESSAGES = 200_000
RATE = 50_000
LOSSY = ("--drop-every", "100", "--linger", "1")  # 1% of the packets left out
pytestmark = pytest.mark.slow


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "udp.toml"
    config.write_text(
        f'[service]\nshm_dir = "{tmp_path}"\nshm_prefix = "lltest-udp-{uuid.uuid4().hex[:8]}"\n'
        f'[feed]\nsource = "udp"\nrate = {RATE}\ninstruments = 4\n'
        f'[exchange]\nmarket_data = "127.0.0.1:{free_port()}"\n'
        f'recovery = "127.0.0.1:{free_port()}"\norders = "127.0.0.1:{free_port()}"\n'
        # the exchange comes up after the feed: retry its recovery service often
        "reconnect_max_ms = 20\ngap_timeout_ms = 500\n"
        f"{extra}"
    )
    return config


def _wait_ready(run: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while "ready: all stages running" not in log.read_text():
        assert run.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the run did not get ready"
        time.sleep(0.1)


def test_a_run_trades_on_the_exchanges_udp_feed_and_recovers_what_it_left_out(tmp_path):
    config = _config(tmp_path)
    log = tmp_path / "run.log"
    with log.open("w") as err:
        run = subprocess.Popen(
            [*CLI, "run", "--config", config, "--duration", "600", "--json", tmp_path / "r.json"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_ready(run, log)
        sent_json = tmp_path / "x.json"
        exchange = subprocess.run(
            [
                *CLI,
                "exchange",
                "--config",
                config,
                f"--messages={MESSAGES}",
                *LOSSY,
                "--json",
                sent_json,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert exchange.returncode == 0, exchange.stderr
        assert run.wait(60) == 0, log.read_text()  # the session's end ended the run
    finally:
        stop_process(run)
    sent = json.loads(sent_json.read_text())
    figures = json.loads((tmp_path / "r.json").read_text())
    c = figures["counters"]
    assert figures["feed_source"] == "udp"
    assert sent["messages"] == MESSAGES and sent["left_out"] > 10
    # every message reached the engine once, in order: the left-out ones through recovery
    assert c["md_messages_processed"] == MESSAGES
    assert c["md_messages_given_up"] == 0 and c["md_messages_lost"] == 0
    assert c["sequence_gaps"] == 0
    assert c["feed_gaps"] >= sent["left_out"] // 2  # a reply may fill two neighbouring gaps
    assert 0 < c["md_messages_recovered"] <= sent["left_out"] * 56
    assert c["md_messages_duplicate"] == 0 and c["udp_packets_malformed"] == 0
    assert c["udp_packets"] >= sent["packets"] - sent["left_out"]
    assert c["recovery_connects"] >= 1 and c["recovery_requests"] >= 1
    assert c["orders_sent"] > 0  # the engine traded on the network's data
    assert figures["latency_ns"]["feed_lag"]["count"] == MESSAGES


def test_a_feed_address_this_host_does_not_have_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[feed]\nsource = "udp"\n[exchange]\nmarket_data = "192.0.2.1:31001"\n')
    result = subprocess.run(
        [*CLI, "run", "--config", config, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"trading-service run: {config}: [exchange] market_data = '192.0.2.1:31001' is not an "
        "address of this host: a unicast feed is sent to this host, so use one of its "
        "addresses, or a multicast group"
    ]
