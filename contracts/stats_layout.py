"""Where every figure the service measures lives in the stats block, and what it means.

This module is the single source of truth for what the service measures: ``CATALOG`` names each
figure, and ``contracts.metric_names`` derives every exported name from it (the telemetry API,
the CloudWatch agent config and the dashboards take theirs from there). It imports only numpy,
so light code (CDK app, Fabric tasks) can read it without compiling anything.

The stats block is one int64 array in shared memory. Each stage owns one section (a seqlock word,
its heartbeat, state and pid, then its counters and gauges) and publishes it whole under the seqlock
(``service.kernels.seqlock.publish_section``), so a reader gets a consistent copy of a stage's
counters. Latency histograms follow the sections; each word of them has one writer and is updated in
place with relaxed atomics (``service.kernels.histogram.hist_record``), so recording costs the hot
path no copy; a reader derives a histogram's count from its buckets, so count and buckets always
agree.

After the stage sections, the engine owns one more seqlocked section, the market section
(``MARKET_*``): its top of book, mid, features and model score per instrument, for researchers
reading a running engine (``service.research.live``). It holds no metrics: nothing in
``CATALOG`` points into it and nothing exports it.

Offsets are plain module-level ints so numba compiles them in as constants.
"""

from __future__ import annotations

from typing import NamedTuple

from contracts.buckets import HIST_WORDS
from contracts.constants import LINE_WORDS
from contracts.features import N_FEATURES
from contracts.stages import ENGINE, FEED, GATEWAY

REJECT_REASONS = (  # risk.risk_check returns 1 + an index into this; the order is the check order
    "kill_switch",
    "max_order_qty",
    "max_notional",
    "price_band",
    "position_limit",
    "rate_throttle",
)
MAX_INSTRUMENTS = 64  # bounds the per-instrument series (positions) and the book arrays

# Words relative to the start of a stage section
SEQ, HEARTBEAT_NS, STATE, PID = range(4)


class _Words:
    """Hands out consecutive word offsets; ``line()`` starts a new 128-byte line."""

    def __init__(self) -> None:
        self.next = 0

    def line(self) -> int:
        self.next = -(-self.next // LINE_WORDS) * LINE_WORDS
        return self.take()

    def take(self, count: int = 1) -> int:
        offset = self.next
        self.next += count
        return offset


_w = _Words()

# --- feed section
FEED_SECTION = _w.line()
_w.take(3)  # heartbeat, state, pid
MD_SENT = _w.take()
MD_DROPPED = _w.take()
MD_RING_FULL = _w.take()
# the UDP feed's (source = "udp"; 0 for the other sources): service.kernels.udp_feed
UDP_PACKETS = _w.take()
UDP_BYTES = _w.take()
FEED_GAPS = _w.take()
MD_RECOVERED = _w.take()
MD_GIVEN_UP = _w.take()
MD_DUPLICATES = _w.take()
UDP_MALFORMED = _w.take()
UDP_WRONG_SESSION = _w.take()
UDP_HEARTBEATS = _w.take()
UDP_SOCKET_ERRORS = _w.take()
RECOVERY_CONNECTED = _w.take()
RECOVERY_CONNECTS = _w.take()
RECOVERY_REQUESTS = _w.take()
RECOVERY_DROPS = _w.take()
FEED_END = _w.next

# --- engine section
ENGINE_SECTION = _w.line()
_w.take(3)
MD_PROCESSED = _w.take()
SEQUENCE_GAPS = _w.take()
MD_LOST = _w.take()
ORDERS_SENT = _w.take()
ORDER_RING_FULL = _w.take()
FILLS = _w.take()
CANCELS = _w.take()
REJECTS = _w.take(len(REJECT_REASONS))
STALE_BOOKS = _w.take()
MD_RING_OCCUPANCY = _w.take()
MD_RING_OCCUPANCY_MAX = _w.take()
FILL_RING_OCCUPANCY = _w.take()
FILL_RING_OCCUPANCY_MAX = _w.take()
KILL_SWITCH_ON = _w.take()
POSITIONS = _w.take(MAX_INSTRUMENTS)
ENGINE_END = _w.next

# --- gateway section
GATEWAY_SECTION = _w.line()
_w.take(3)
ORDERS_RECEIVED = _w.take()
BATCHES = _w.take()
EXCHANGE_FILLS = _w.take()
EXCHANGE_CANCELS = _w.take()
FILL_RING_FULL = _w.take()
ORDER_RING_OCCUPANCY = _w.take()
ORDER_RING_OCCUPANCY_MAX = _w.take()
# order entry over TCP ([gateway] exchange = "tcp"; 0 with the simulated exchange)
EXCHANGE_CONNECTED = _w.take()
ORDERS_ENTERED = _w.take()
ORDERS_RESENT = _w.take()
ORDERS_OPEN = _w.take()
EXCHANGE_REJECTS = _w.take()
EXCHANGE_SESSIONS = _w.take()
EXCHANGE_DROPS = _w.take()
GATEWAY_END = _w.next

SECTION_START = (FEED_SECTION, ENGINE_SECTION, GATEWAY_SECTION)
SECTION_END = (FEED_END, ENGINE_END, GATEWAY_END)

# --- market section (the engine's; not metrics, not in SECTION_START: see the module docstring).
# Published by the engine with its own section, every stats interval, over only the records of
# the instruments it has: [MARKET_SECTION, MARKET_RECORDS + n * MARKET_RECORD_WORDS).
# Words from MARKET_SECTION: SEQ and HEARTBEAT_NS as in every section (publish_section and
# read_section work on it unchanged), then:
#   MARKET_INSTRUMENTS    how many instruments the engine has (records 0..n-1 are published)
#   MARKET_FEATURE_COUNT  how many feature words of each record it fills (N_FEATURES of
#                         service.kernels.signals, where the features are defined and named)
#   MARKET_RECORDS        record of instrument i at MARKET_RECORDS + i * MARKET_RECORD_WORDS
# Words of a record, from its start (prices in ticks; floats as their float64 bit pattern, read
# them with .view(numpy.float64)):
MARKET_BID_PX = 0  # best bid price, -1 when the bid side is empty (service.kernels.book.EMPTY)
MARKET_BID_QTY = 1  # size resting at the best bid, 0 when the side is empty
MARKET_ASK_PX = 2  # best ask price, -1 when the ask side is empty
MARKET_ASK_QTY = 3  # size resting at the best ask, 0 when the side is empty
MARKET_MID = 4  # float64: mid of the last two-sided uncrossed book, NaN before the first one
MARKET_SCORE = 5  # float64: the engine's model score of the features below
MARKET_FEATURE_WORDS = 6  # float64s: the features, in contracts.features.FEATURE_NAMES order
# Room for features in a record: N_FEATURES of contracts.features today, with room for more
# without moving a word (10: a record is 16 words, one 128-byte line).
MARKET_MAX_FEATURES = 10
assert N_FEATURES <= MARKET_MAX_FEATURES, "raise MARKET_MAX_FEATURES: a record holds the features"
MARKET_RECORD_WORDS = MARKET_FEATURE_WORDS + MARKET_MAX_FEATURES

MARKET_SECTION = _w.line()
_w.take(1)  # heartbeat
MARKET_INSTRUMENTS = _w.take()
MARKET_FEATURE_COUNT = _w.take()
MARKET_RECORDS = _w.take(MAX_INSTRUMENTS * MARKET_RECORD_WORDS)
MARKET_END = _w.next

# --- histograms (not seqlocked: see the module docstring)
H_FEED_LAG = _w.line()
_w.take(HIST_WORDS - 1)
H_MD_TO_ENGINE = _w.line()
_w.take(HIST_WORDS - 1)
H_ORDER_WAIT = _w.line()
_w.take(HIST_WORDS - 1)
H_TICK_TO_ORDER = _w.line()
_w.take(HIST_WORDS - 1)

# --- SLO thresholds and exact counts at them (written like the histograms: one writer a word).
# The log-linear buckets have no boundary at a round threshold such as 5 us, so the gateway
# also counts the tick-to-order observations at or below each threshold; the exported
# histogram then has an exact bucket boundary at every SLO. The supervisor writes the
# thresholds (ns, 0 = unused) when it creates the block.
MAX_SLO_THRESHOLDS = 4
SLO_THRESHOLDS_NS = _w.line()
_w.take(MAX_SLO_THRESHOLDS - 1)
SLO_TICK_TO_ORDER_WITHIN = _w.take(MAX_SLO_THRESHOLDS)

STATS_WORDS = _w.line()


class Metric(NamedTuple):
    """One measured figure: ``words`` consecutive words from ``offset`` (labels index them)."""

    name: str
    kind: str  # "counter", "gauge" or "histogram" (nanoseconds)
    stage: int
    offset: int
    help: str
    label: str = ""  # label name when words > 1: "reason" or "instrument"
    words: int = 1


CATALOG = (
    Metric("md_messages_sent", "counter", FEED, MD_SENT, "Market-data messages published"),
    Metric(
        "md_messages_dropped",
        "counter",
        FEED,
        MD_DROPPED,
        "Messages dropped at a fixed offered rate because the market-data ring was full",
    ),
    Metric("md_ring_full", "counter", FEED, MD_RING_FULL, "Times the market-data ring was full"),
    Metric("udp_packets", "counter", FEED, UDP_PACKETS, "Market-data datagrams received"),
    Metric("udp_bytes", "counter", FEED, UDP_BYTES, "Bytes of market-data datagrams received"),
    Metric("feed_gaps", "counter", FEED, FEED_GAPS, "Gaps the UDP feed handler found"),
    Metric(
        "md_messages_recovered",
        "counter",
        FEED,
        MD_RECOVERED,
        "Messages of gaps delivered from the recovery service",
    ),
    Metric(
        "md_messages_given_up",
        "counter",
        FEED,
        MD_GIVEN_UP,
        "Messages of gaps not recovered in time (the engine counts them lost)",
    ),
    Metric(
        "md_messages_duplicate",
        "counter",
        FEED,
        MD_DUPLICATES,
        "Messages received again and dropped",
    ),
    Metric(
        "udp_packets_malformed",
        "counter",
        FEED,
        UDP_MALFORMED,
        "Datagrams dropped whole: malformed, truncated or oversized",
    ),
    Metric(
        "udp_packets_wrong_session",
        "counter",
        FEED,
        UDP_WRONG_SESSION,
        "Datagrams of another session, dropped",
    ),
    Metric("udp_heartbeats", "counter", FEED, UDP_HEARTBEATS, "Heartbeats from the exchange"),
    Metric(
        "udp_socket_errors",
        "counter",
        FEED,
        UDP_SOCKET_ERRORS,
        "Errors the market-data socket returned",
    ),
    Metric(
        "recovery_connected",
        "gauge",
        FEED,
        RECOVERY_CONNECTED,
        "1 while the feed is connected to the recovery service",
    ),
    Metric("recovery_connects", "counter", FEED, RECOVERY_CONNECTS, "Recovery connections made"),
    Metric("recovery_requests", "counter", FEED, RECOVERY_REQUESTS, "Recovery requests sent"),
    Metric(
        "recovery_drops",
        "counter",
        FEED,
        RECOVERY_DROPS,
        "Recovery connections given up (closed by the service or a broken stream)",
    ),
    Metric("md_messages_processed", "counter", ENGINE, MD_PROCESSED, "Messages the engine applied"),
    Metric("sequence_gaps", "counter", ENGINE, SEQUENCE_GAPS, "Market-data sequence gaps seen"),
    Metric("md_messages_lost", "counter", ENGINE, MD_LOST, "Messages missing in sequence gaps"),
    Metric("orders_sent", "counter", ENGINE, ORDERS_SENT, "Orders that passed the risk checks"),
    Metric(
        "orders_rejected",
        "counter",
        ENGINE,
        REJECTS,
        "Orders rejected by the risk checks",
        "reason",
        len(REJECT_REASONS),
    ),
    Metric("order_ring_full", "counter", ENGINE, ORDER_RING_FULL, "Times the order ring was full"),
    Metric("fills", "counter", ENGINE, FILLS, "Executions received by the engine"),
    Metric("cancels", "counter", ENGINE, CANCELS, "Orders that ended unfilled"),
    Metric(
        "stale_books", "gauge", ENGINE, STALE_BOOKS, "Books stale after a gap, until a snapshot"
    ),
    Metric(
        "md_ring_occupancy", "gauge", ENGINE, MD_RING_OCCUPANCY, "Messages queued for the engine"
    ),
    Metric(
        "md_ring_occupancy_max",
        "gauge",
        ENGINE,
        MD_RING_OCCUPANCY_MAX,
        "Highest market-data ring occupancy seen",
    ),
    Metric(
        "fill_ring_occupancy", "gauge", ENGINE, FILL_RING_OCCUPANCY, "Fills queued for the engine"
    ),
    Metric(
        "fill_ring_occupancy_max",
        "gauge",
        ENGINE,
        FILL_RING_OCCUPANCY_MAX,
        "Highest fill ring occupancy seen",
    ),
    Metric("kill_switch", "gauge", ENGINE, KILL_SWITCH_ON, "1 while the kill switch is on"),
    Metric(
        "position",
        "gauge",
        ENGINE,
        POSITIONS,
        "Net position in lots",
        "instrument",
        MAX_INSTRUMENTS,
    ),
    Metric("orders_received", "counter", GATEWAY, ORDERS_RECEIVED, "Orders taken by the batcher"),
    Metric("order_batches", "counter", GATEWAY, BATCHES, "Batches sent to the exchange"),
    Metric("exchange_fills", "counter", GATEWAY, EXCHANGE_FILLS, "Orders the exchange filled"),
    Metric(
        "exchange_cancels", "counter", GATEWAY, EXCHANGE_CANCELS, "Orders the exchange cancelled"
    ),
    Metric("fill_ring_full", "counter", GATEWAY, FILL_RING_FULL, "Times the fill ring was full"),
    Metric("order_ring_occupancy", "gauge", GATEWAY, ORDER_RING_OCCUPANCY, "Orders queued"),
    Metric(
        "order_ring_occupancy_max",
        "gauge",
        GATEWAY,
        ORDER_RING_OCCUPANCY_MAX,
        "Highest order ring occupancy seen",
    ),
    Metric(
        "exchange_connected",
        "gauge",
        GATEWAY,
        EXCHANGE_CONNECTED,
        "1 while the order-entry session with the exchange is up and caught up",
    ),
    Metric("orders_entered", "counter", GATEWAY, ORDERS_ENTERED, "Orders sent to the exchange"),
    Metric(
        "orders_resent",
        "counter",
        GATEWAY,
        ORDERS_RESENT,
        "Orders sent again after a reconnect (the exchange had not seen them)",
    ),
    Metric("orders_open", "gauge", GATEWAY, ORDERS_OPEN, "Orders at the exchange, not ended"),
    Metric(
        "exchange_rejects", "counter", GATEWAY, EXCHANGE_REJECTS, "Orders the exchange rejected"
    ),
    Metric(
        "exchange_sessions",
        "counter",
        GATEWAY,
        EXCHANGE_SESSIONS,
        "Order-entry sessions logged in and caught up",
    ),
    Metric(
        "exchange_drops",
        "counter",
        GATEWAY,
        EXCHANGE_DROPS,
        "Order-entry connections lost (closed, broken or silent)",
    ),
    Metric(
        "feed_lag",
        "histogram",
        FEED,
        H_FEED_LAG,
        "Publish time minus intended send time of market-data messages",
    ),
    Metric(
        "md_to_engine",
        "histogram",
        ENGINE,
        H_MD_TO_ENGINE,
        "Intended send time to the engine having applied the message",
    ),
    Metric("order_wait", "histogram", GATEWAY, H_ORDER_WAIT, "Time an order waited in the batcher"),
    Metric(
        "tick_to_order",
        "histogram",
        GATEWAY,
        H_TICK_TO_ORDER,
        "Intended send time of a message to the order it caused leaving the batcher",
    ),
)
