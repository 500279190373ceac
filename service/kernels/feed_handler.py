"""The UDP feed handler's sequencing: datagrams in, market data out in order, gaps recovered.

A handler takes each datagram the socket gives it (``handler_on_datagram``), checks it
(``market_packets.packet_check``) and writes its new messages, in sequence order, into the
market-data ring. It keeps the next sequence number it expects:

- a packet wholly below it is a duplicate (multicast A/B lines, a replayed packet): counted,
  dropped;
- a packet that overlaps it delivers only its new messages;
- a packet beyond it opens a *gap*: the packet is held (a fixed pool of datagrams), and the
  range ``[next, first held)`` is what the recovery client asks the exchange's recovery
  service for (``handler_missing``). Recovered packets come back through the same call
  (``source`` RECOVERY, so they are counted apart), and each one that closes the range
  releases the held packets behind it;
- a gap that is not recovered within its time (``handler_expire``), or a hold pool that
  fills, is given up: the held packets are delivered with the jump in their sequence numbers,
  which the engine sees (``stages._engine_on_gap``: that instrument's book is stale until a
  snapshot), and the lost messages are counted.

Nothing is delivered twice or out of order, and nothing blocks: when the ring has no room for
a packet, it is held like one beyond a gap, and ``handler_release`` delivers it later.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.wire import MAX_DATAGRAM
from service.kernels.jit import kernel
from service.kernels.market_packets import (
    P_END,
    P_HEARTBEAT,
    P_MALFORMED,
    P_WRONG_SESSION,
    packet_check,
    packet_message,
)
from service.kernels.ring import ring_claim, ring_publish, ring_write_slot

LIVE, RECOVERY = 0, 1  # handler_on_datagram's source

# ivars[...]
I_NEXT_SEQ = 0  # the next sequence number to deliver; 0 until the first packet (then joined)
I_KNOWN_END = 1  # every number below this one has been sent (packets and heartbeats say so)
I_GAP_OPEN = 2  # numbers from I_NEXT_SEQ on are missing, not merely held
I_GAP_SINCE_NS = 3  # when the open gap was found
I_HELD = 4  # datagrams in the hold pool
I_ENDED = 5  # the session's end was seen
I_N_INSTRUMENTS = 6
I_GAP_UNTIL = 7  # where the open gap's run of missing numbers ended when it was found
I_LIVE_END = 8  # the end of the highest numbers the live feed has sent us
N_IVARS = 9

# counters[...]: what the telemetry shows
C_PACKETS = 0
C_BYTES = 1
C_MESSAGES = 2  # delivered into the ring
C_GAPS = 3  # gaps found (each may span many messages)
C_RECOVERED = 4  # messages delivered from recovery
C_LOST = 5  # messages given up: the gap expired or the hold pool filled
C_DUPLICATES = 6  # messages the live feed sent again, dropped (not recovery's overlaps)
C_MALFORMED = 7  # datagrams refused by packet_check
C_WRONG_SESSION = 8
C_HEARTBEATS = 9
N_COUNTERS = 10

FeedHandler = namedtuple(
    "FeedHandler", "session ivars counters held held_count held_seq held_source"
)
FeedHandler.__doc__ = "One session's sequencing state, counters and pool of held datagrams."


def new_feed_handler(
    session: np.ndarray, n_instruments: int, hold: int, first_seq: int = 0
) -> FeedHandler:
    """A handler for ``session`` (``market_packets.session_bytes``) that holds up to ``hold``
    datagrams while a gap is recovered and expects ``first_seq`` first: 1 from the start of
    the session, 0 to join wherever the first packet it sees is (a restart mid-session, which
    the engine's book meets with a snapshot)."""
    if hold < 1:
        raise ValueError(f"hold must be at least 1 datagram (got {hold})")
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[I_NEXT_SEQ] = first_seq
    ivars[I_N_INSTRUMENTS] = n_instruments
    return FeedHandler(
        session=np.asarray(session, np.uint8).copy(),
        ivars=ivars,
        counters=np.zeros(N_COUNTERS, np.int64),
        held=np.zeros((hold, MAX_DATAGRAM), np.uint8),
        held_count=np.zeros(hold, np.int64),  # messages in the held packet (checked)
        held_seq=np.zeros(hold, np.int64),  # 0: a free slot
        held_source=np.zeros(hold, np.int64),  # LIVE or RECOVERY
    )


@kernel
def _deliver(h, buf, seq, count, md, source):
    """Write the messages of a checked packet from I_NEXT_SEQ on; False (nothing written) when
    the ring has no room for them all."""
    first = max(h.ivars[I_NEXT_SEQ] - seq, 0)
    want = count - first
    if ring_claim(md, want) < want:
        return False
    for k in range(want):
        packet_message(buf, first + k, seq + first + k, md.data, ring_write_slot(md, k))
    ring_publish(md, want)
    h.ivars[I_NEXT_SEQ] = seq + count
    h.counters[C_MESSAGES] += want
    if source == RECOVERY:
        h.counters[C_RECOVERED] += want
    return True


@kernel
def _hold(h, buf, n, seq, count, source):
    """Keep a datagram for later; False when the pool is full."""
    for k in range(h.held_seq.shape[0]):
        if h.held_seq[k] == 0:
            for b in range(n):  # no slices: a kernel never allocates (jit.py)
                h.held[k, b] = buf[b]
            h.held_count[k] = count
            h.held_seq[k] = seq
            h.held_source[k] = source
            h.ivars[I_HELD] += 1
            return True
    return False


@kernel
def _first_held(h):
    """Slot of the held datagram with the lowest sequence number, -1 when none."""
    best = -1
    for k in range(h.held_seq.shape[0]):
        if h.held_seq[k] != 0 and (best < 0 or h.held_seq[k] < h.held_seq[best]):
            best = k
    return best


@kernel
def _missing_end(h):
    """Where the run of missing numbers from I_NEXT_SEQ ends (exclusive): the first held
    datagram, or else what the sender is known to have sent."""
    k = _first_held(h)
    return h.held_seq[k] if k >= 0 else h.ivars[I_KNOWN_END]


@kernel
def _track_gap(h, now):
    """Open a gap (counted, timed from ``now``) when numbers are missing; close it when not.
    A run of missing numbers behind the one just filled is a new gap with its own time."""
    end = _missing_end(h)
    missing = end > h.ivars[I_NEXT_SEQ]
    new_run = h.ivars[I_GAP_OPEN] == 0 or h.ivars[I_NEXT_SEQ] >= h.ivars[I_GAP_UNTIL]
    if missing and new_run:
        h.counters[C_GAPS] += 1
        h.ivars[I_GAP_SINCE_NS] = now
        h.ivars[I_GAP_UNTIL] = end
    h.ivars[I_GAP_OPEN] = missing


@kernel
def handler_release(h, md):
    """Deliver the held datagrams that are next in sequence, in order, while the ring has
    room. Returns messages delivered."""
    delivered = 0
    while h.ivars[I_HELD] > 0:
        k = _first_held(h)
        if h.held_seq[k] > h.ivars[I_NEXT_SEQ]:
            break  # numbers before it are still missing
        seq = h.held_seq[k]
        count = h.held_count[k]
        if seq + count > h.ivars[I_NEXT_SEQ]:  # else recovery delivered it all meanwhile
            before = h.counters[C_MESSAGES]
            if not _deliver(h, h.held[k], seq, count, md, h.held_source[k]):
                break  # no room: it stays held
            delivered += h.counters[C_MESSAGES] - before
        h.held_seq[k] = 0
        h.ivars[I_HELD] -= 1
    if h.ivars[I_GAP_OPEN] != 0 and _missing_end(h) <= h.ivars[I_NEXT_SEQ]:
        h.ivars[I_GAP_OPEN] = 0
    return delivered


@kernel
def _give_up(h, md, now):
    """Stop waiting for the missing run: count it lost, jump past it, deliver what is held
    (the engine sees the jump in sequence numbers); a later run is a new gap from ``now``."""
    until = _missing_end(h)
    if until > h.ivars[I_NEXT_SEQ]:
        h.counters[C_LOST] += until - h.ivars[I_NEXT_SEQ]
        h.ivars[I_NEXT_SEQ] = until
    h.ivars[I_GAP_OPEN] = 0
    delivered = handler_release(h, md)
    _track_gap(h, now)
    return delivered


@kernel
def handler_on_datagram(h, buf, n, md, source, now):
    """One datagram ``buf[:n]`` from the live feed or from recovery; returns the messages it
    (and any held datagrams it released) delivered into ``md``."""
    c = h.counters
    c[C_PACKETS] += 1
    c[C_BYTES] += n
    verdict, seq, count = packet_check(buf, n, h.session, h.ivars[I_N_INSTRUMENTS])
    if verdict == P_MALFORMED:
        c[C_MALFORMED] += 1
        return 0
    if verdict == P_WRONG_SESSION:
        c[C_WRONG_SESSION] += 1
        return 0
    if h.ivars[I_NEXT_SEQ] == 0:
        h.ivars[I_NEXT_SEQ] = seq  # joined mid-session: the engine needs a snapshot anyway
    if source == LIVE:  # what the live feed sent twice (recovery's overlaps are not counted)
        c[C_DUPLICATES] += max(min(seq + count, h.ivars[I_LIVE_END]) - seq, 0)
        h.ivars[I_LIVE_END] = max(h.ivars[I_LIVE_END], seq + count)
    # a heartbeat's number is the sender's next one; a packet ends at its last number plus one
    h.ivars[I_KNOWN_END] = max(h.ivars[I_KNOWN_END], seq + count)
    delivered = 0
    new = seq + count > h.ivars[I_NEXT_SEQ]  # else delivered already (sent twice, or recovered)
    if verdict in (P_HEARTBEAT, P_END):
        c[C_HEARTBEATS] += verdict == P_HEARTBEAT
        h.ivars[I_ENDED] = verdict == P_END
    elif new and (seq > h.ivars[I_NEXT_SEQ] or h.ivars[I_HELD] > 0):  # after a gap or held ones
        if not _hold(h, buf, n, seq, count, source):  # the pool is full: give the gap up
            delivered = _give_up(h, md, now)
            if not _hold(h, buf, n, seq, count, source):
                return delivered  # the ring is full too: lost, as on the wire
        delivered += handler_release(h, md)
    elif new:
        before = c[C_MESSAGES]
        if not _deliver(h, buf, seq, count, md, source):
            _hold(h, buf, n, seq, count, source)  # the ring is full: later, in order
        delivered = c[C_MESSAGES] - before
    _track_gap(h, now)
    return delivered


@kernel
def handler_missing(h):
    """(first sequence number, count) the recovery client should ask for; count 0 if none."""
    first = h.ivars[I_NEXT_SEQ]
    if first == 0:
        return first, np.int64(0)
    return first, max(_missing_end(h) - first, 0)


@kernel
def handler_expire(h, md, now, timeout_ns):
    """Give up a gap open for longer than ``timeout_ns``; returns messages delivered."""
    if h.ivars[I_GAP_OPEN] != 0 and now - h.ivars[I_GAP_SINCE_NS] > timeout_ns:
        return _give_up(h, md, now)
    return 0
