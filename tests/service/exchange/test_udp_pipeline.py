"""`trading-service run` with ``[feed] source = "udp"`` and ``[gateway] exchange = "tcp"`` against
`trading-service exchange`, both real processes on loopback: the session's market data crosses
real UDP sockets, the packets the exchange leaves out on purpose are recovered over TCP, the
engine trades on what arrives, its orders go to the exchange over TCP and come back as fills,
the order-entry connection the exchange cuts is reconnected and reconciled (none lost, none
entered twice), /ready says 503 "exchange not connected" until the exchange is up, and the run
ends when the exchange ends its session. The stages busy-poll on the last CPU; the exchange
sleeps between packets on the others (``service.exchange.venue``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest

from service.bench.netns import VethPair
from tests.support.net import free_port, stop_process

CLI = [sys.executable, "-m", "service.cli"]
MESSAGES = 200_000
RATE = 50_000
# 1% of the packets left out; the order-entry connection cut after every 25th order
FAULTS = ("--drop-every", "100", "--disconnect-every", "25", "--linger", "5")
pytestmark = pytest.mark.slow


def _config(
    tmp_path: Path, extra: str = "", host: str = "127.0.0.1", exchange: str = "127.0.0.1"
) -> Path:
    """The run's and the exchange's config: market data to ``host`` (the run's side), recovery
    and orders at ``exchange``."""
    config = tmp_path / "udp.toml"
    config.write_text(
        f'[service]\nshm_dir = "{tmp_path}"\nshm_prefix = "lltest-udp-{uuid.uuid4().hex[:8]}"\n'
        f'[feed]\nsource = "udp"\nrate = {RATE}\ninstruments = 4\n'
        f'[gateway]\nexchange = "tcp"\n'
        f"[telemetry]\nport = {free_port()}\n"
        f'[exchange]\nmarket_data = "{host}:{free_port()}"\n'
        f'recovery = "{exchange}:{free_port()}"\norders = "{exchange}:{free_port()}"\n'
        # the exchange comes up after the feed: retry its recovery service often. A machine
        # as loaded as CI's (the lab's emulator beside the tests) can stall either side for
        # long: this test is about what recovery delivers, not how fast
        "reconnect_max_ms = 20\ngap_timeout_ms = 30000\nhold_packets = 16384\n"
        f"{extra}"
    )
    return config


def _wait_ready(run: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while "ready: all stages running" not in log.read_text():
        assert run.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the run did not get ready"
        time.sleep(0.1)


def _ready(config: Path) -> tuple[int, list[str]]:
    port = tomllib.loads(config.read_text())["telemetry"]["port"]
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0)
    except httpx.TransportError:
        return 0, []
    return response.status_code, response.json()["reasons"]


def test_a_run_trades_with_the_exchange_over_udp_and_tcp_through_lost_packets_and_cuts(tmp_path):
    config = _config(tmp_path)
    log = tmp_path / "run.log"
    sent_json, run_json = tmp_path / "x.json", tmp_path / "r.json"
    exchange = None
    with log.open("w") as err:
        run = subprocess.Popen(
            [*CLI, "run", "--config", config, "--duration=600", "--json", run_json, "--telemetry"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_ready(run, log)
        deadline = time.monotonic() + 30
        while (status := _ready(config))[0] != 503:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert any(r.startswith("exchange not connected") for r in status[1]), status
        json_out = ("--json", sent_json)
        exchange = subprocess.Popen(
            [*CLI, "exchange", f"--config={config}", f"--messages={MESSAGES}", *FAULTS, *json_out],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        readiness = []
        while exchange.poll() is None:
            readiness.append(_ready(config)[0])
            time.sleep(0.05)
        assert exchange.returncode == 0, exchange.communicate()[1]
        assert 200 in readiness  # ready once the session was up
        assert run.wait(60) == 0, log.read_text()  # the session's end ended the run
    finally:
        stop_process(run)
        if exchange is not None:
            stop_process(exchange)
    sent = json.loads(sent_json.read_text())  # what the exchange did
    figures = json.loads(run_json.read_text())
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
    assert figures["latency_ns"]["feed_lag"]["count"] == MESSAGES
    # the engine traded on the network's data, and every order went to the exchange once
    orders = c["orders_sent"]
    assert orders > 50
    assert sent["orders"] == orders and sent["duplicate_enters"] == 0, (sent, c)
    assert c["exchange_fills"] + c["exchange_cancels"] == orders == c["fills"] + c["cancels"]
    assert c["exchange_fills"] == sent["order_fills"] > 0
    # the exchange cut the connection every 25 orders: logged in again each time
    assert sent["order_logins"] >= orders // 25 and c["exchange_sessions"] >= orders // 25
    assert c["exchange_rejects"] == 0  # every order ended: fills + cancels == orders, above


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="two network namespaces need root, ip and nft",
)
def test_a_run_trades_with_an_exchange_in_another_namespace_across_a_lossy_veth(tmp_path):
    """The run in one namespace, the exchange in another, joined by a veth pair: every packet
    crosses a network device, and the market data is a multicast group the feed joins on its
    veth. An nftables rule in the run's namespace drops 1 % of it (tc netem is not in this
    machine's kernel; nft's numgen does the same job), and the exchange cuts the order-entry
    connection every 40 orders."""
    with VethPair(f"lltest-x{os.getpid()}", subnet=42) as veth:
        # one config each: the group is joined on the run's interface, sent from the exchange's
        config = _config(
            tmp_path, f'interface = "{veth.a_ip}"\n', host="239.192.0.42", exchange=veth.b_ip
        )
        exchange_config = tmp_path / "exchange.toml"
        exchange_config.write_text(config.read_text().replace(veth.a_ip, veth.b_ip))
        veth.drop_incoming_udp(veth.a, 1)
        log = tmp_path / "run.log"
        sent_json, run_json = tmp_path / "x.json", tmp_path / "r.json"
        in_a, in_b = ["ip", "netns", "exec", veth.a], ["ip", "netns", "exec", veth.b]
        with log.open("w") as err:
            run = subprocess.Popen(
                [*in_a, *CLI, "run", "--config", config, "--duration=600", "--json", run_json],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            _wait_ready(run, log)
            exchange = subprocess.run(
                [*in_b, *CLI, "exchange", f"--config={exchange_config}",
                 f"--messages={MESSAGES // 2}",
                 "--disconnect-every=40", "--linger=5", "--json", sent_json],
                capture_output=True,
                text=True,
                timeout=600,
            )  # fmt: skip
            assert exchange.returncode == 0, exchange.stderr
            assert run.wait(60) == 0, log.read_text()
            dropped = veth.keep_all_udp(veth.a)
        finally:
            stop_process(run)
    sent, figures = json.loads(sent_json.read_text()), json.loads(run_json.read_text())
    c = figures["counters"]
    assert sent["messages"] == MESSAGES // 2 and sent["left_out"] == 0  # the link lost them
    assert c["md_messages_processed"] == MESSAGES // 2 and c["sequence_gaps"] == 0
    assert c["md_messages_given_up"] == 0 and c["md_messages_duplicate"] == 0
    assert c["feed_gaps"] > 0 and c["md_messages_recovered"] > 0, c  # ~200 packets dropped
    # every packet the link let through was read (the count has heartbeats and ends besides)
    assert c["udp_packets"] >= sent["packets"] - dropped
    orders = c["orders_sent"]
    assert orders > 50 and sent["orders"] == orders and sent["duplicate_enters"] == 0
    assert c["exchange_fills"] + c["exchange_cancels"] == orders
    assert c["exchange_sessions"] >= orders // 40
    assert dropped > 0


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
