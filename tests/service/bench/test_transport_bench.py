"""``bench --transports`` with fake measures: every step runs in its order, the document holds
every figure, the ratios are the p50s divided, the goals are judged, the UDP sweep stops at the
first loss, and a machine that cannot make namespaces gets the loopback figures and one reason."""

from __future__ import annotations

import contextlib
import json

from service.bench import transport_bench as tb
from service.bench import transports as t
from service.bench.netns import NetnsError

P50 = {"ring": 500.0, "udp": 5500.0, "tcp": 8000.0}
C_P50 = {"udp": 5000.0, "tcp": 7000.0}


def tail(p50: float) -> dict[str, float]:
    return {"min": p50 / 2, "p50": p50, "p90": p50, "p99": 2 * p50, "p999": 3 * p50, "max": 9e5}


def stream(count: int, rate: int, lost: int = 0, sent: float | None = None) -> dict:
    return {
        "offered_msgs_per_s": rate or None,
        "sent_msgs_per_s": rate if sent is None else sent,
        "received": count - lost,
        "lost": lost,
        "out_of_order": 0,
        "received_msgs_per_s": float(sent if sent is not None else rate or 1e6),
    }


class Fakes:
    def __init__(self, veth_fails: bool = False, loss_from: int = 2_000_000) -> None:
        self.calls: list[str] = []
        self.veth_fails, self.loss_from = veth_fails, loss_from

    def measures(self) -> tb.Measures:
        return tb.Measures(
            ring_rtt=lambda cpus, n: self.log("ring_rtt", tail(P50["ring"])),
            socket_rtt=lambda p, r, cpus, n: self.log(f"rtt {p} {r.name}", tail(P50[p])),
            c_rtt=lambda p, r, cpus, n: self.log(f"c {p} {r.name}", tail(C_P50[p])),
            ring_stream=lambda cpus, n: self.log("ring_stream", stream(n, 0)),
            stream=self.stream,
            ring_e2e=lambda cores, rate, s: self.log("ring_e2e", {**tail(1000.0), "drops": 0}),
            exchange_e2e=lambda r, rate, s: self.log(f"e2e {r.name}", tail(50_000.0)),
            veth=self.veth,
            service_cores=lambda: {"feed": 1, "engine": 1, "gateway": 1},
        )

    def log(self, name: str, value):
        self.calls.append(name)
        return value

    def stream(self, proto, route, cpus, count, rate):
        self.calls.append(f"stream {proto} {route.name} {rate}")
        return stream(count, rate, lost=count // 10 if rate >= self.loss_from else 0)

    @contextlib.contextmanager
    def veth(self):
        if self.veth_fails:
            raise NetnsError("network namespaces need root (CAP_NET_ADMIN)")
        self.calls.append("veth up")
        yield t.Route("veth", "a", "b", "10.0.0.1", "10.0.0.2")
        self.calls.append("veth down")


def test_every_figure_ratio_and_goal_of_a_full_run():
    fakes = Fakes()
    f = tb.run_transport_bench(False, (0, 1), fakes.measures())
    assert set(f["rtt_ns"]) == {"ring", "udp_loopback", "tcp_loopback", "udp_veth", "tcp_veth"}
    assert set(f["c_rtt_ns"]) == {"udp_loopback", "tcp_loopback", "udp_veth", "tcp_veth"}
    assert set(f["tick_to_order_ns"]) == {"ring", "udp_loopback", "udp_veth"}
    assert f["message_bytes"] == 64 and f["errors"] == {}
    r = f["ratios"]
    assert r["udp_rtt_vs_c"] == r["udp_veth_rtt_vs_c"] == 5500 / 5000
    assert r["tcp_rtt_vs_c"] == 8000 / 7000
    assert r["udp_rtt_vs_ring"] == 5500 / 500
    g = f["goals"]
    assert g["udp_rtt_vs_c"]["met"] is True and g["udp_rtt_vs_ring"]["met"] is True
    # the sweep stops at the first rate that lost messages; the highest whole one is reported
    sweep = f["msgs_per_s"]["udp_loopback"]["sweep"]
    assert list(sweep) == ["250000", "500000", "1000000", "2000000"]
    assert f["msgs_per_s"]["udp_loopback"]["max_without_loss"] == 1_000_000
    assert g["udp_loopback_msgs_per_s_without_loss"]["met"] is True
    # the namespaces exist for the veth steps only, and go away after them
    assert fakes.calls.index("veth up") > fakes.calls.index("e2e loopback")
    assert fakes.calls[-1] == "veth down"
    json.dumps(f)  # the document is JSON as it is


def test_a_rate_the_sender_did_not_reach_counts_as_reached_and_a_missed_goal_says_so():
    fakes = Fakes(loss_from=10**9)

    def slow(proto, route, cpus, count, rate):  # a sender stuck at 600,000 msgs/s
        return stream(count, rate, sent=min(rate, 600_000.0))

    measures = tb.Measures(**{**fakes.measures().__dict__, "stream": slow})
    f = tb.run_transport_bench(True, (0, 1), measures)
    udp = f["msgs_per_s"]["udp_loopback"]
    assert udp["max_without_loss"] == 600_000  # what arrived, not the 1,000,000 asked for
    assert [run["sender_limited"] for run in udp["sweep"].values()] == [False, False, True]
    assert f["goals"]["udp_loopback_msgs_per_s_without_loss"]["met"] is False


def test_without_namespaces_the_loopback_figures_stand_and_the_reason_is_given():
    fakes = Fakes(veth_fails=True)
    f = tb.run_transport_bench(True, (0, 1), fakes.measures())
    assert f["errors"] == {"veth": "network namespaces need root (CAP_NET_ADMIN)"}
    assert "udp_veth" not in f["rtt_ns"] and "udp_veth" not in f["tick_to_order_ns"]
    assert f["ratios"]["udp_veth_rtt_vs_c"] is None and f["ratios"]["udp_rtt_vs_c"] is not None
    assert f["goals"]["udp_veth_rtt_vs_c"]["met"] is None
    assert not any("veth" in call for call in fakes.calls)


def test_the_report_prints_each_transport_and_each_goal(capsys):
    f = tb.run_transport_bench(True, (0, 1), Fakes(veth_fails=True).measures())
    tb.print_transport_report(f)
    out = capsys.readouterr().out
    for word in ("udp_loopback", "tcp_loopback", "udp_rtt_vs_c", "udp_rtt_vs_ring", "not measured"):
        assert word in out
    assert "MISSED" not in out.split("udp_rtt_vs_ring")[1].splitlines()[0]
