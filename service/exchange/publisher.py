"""The exchange's market-data publisher: messages into sequenced UDP packets, compiled.

The messages come from the feed simulator (``service.kernels.feed``, with the pipeline's own
schedule: the configured rate with its bursts) or from a recording, and are kept in
``records`` (message k has sequence number k + 1), which is also what the recovery service
rebuilds lost packets from. ``publish_due`` sends every message due by ``now`` in packets of
up to ``per_packet``, stamping each with its intended send time, so the receiver's latency
counts any delay of ours. A heartbeat goes out when nothing has for ``heartbeat_ns``, and
``publish_end`` ends the session. ``drop_every`` > 0 leaves out every n-th packet (counted),
a loss a test can ask for without a network namespace.

How far the publisher has got is published with a release store after the records are
written, and read with an acquire load (``published_count``): the recovery service reads it
from its own threads and must see the records it covers, on arm64 too.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from contracts.records import MARKET_DATA
from contracts.wire import END_OF_SESSION, MAX_DATAGRAM, MAX_MESSAGES_PER_PACKET
from service.kernels.atomics import load_acquire, store_release
from service.kernels.feed import new_simulator, sim_next, sim_next_interval_ns
from service.kernels.jit import kernel
from service.kernels.market_packets import packet_build
from service.kernels.sockets import MSG_DONTWAIT, send

# ivars[...]
P_FD = 0  # a connected UDP socket
P_PUBLISHED = 1  # messages published (release store; read with published_count)
P_TOTAL = 2  # messages in the session
P_PER_PACKET = 3
P_DROP_EVERY = 4
P_REPLAYING = 5  # records came filled from a recording: only seq and send_ns are stamped
P_HEARTBEAT_NS = 6
P_LAST_SEND_NS = 7
P_PACKETS = 8  # packets cut (counter), including those left out on purpose
P_LEFT_OUT = 9  # packets left out by drop_every (counter)
P_SEND_ERRORS = 10  # sends the socket refused (counter)
P_HEARTBEATS = 11
N_IVARS = 12
# fvars[...]
F_NEXT_NS = 0  # intended time of the next message
F_INTERVAL_NS = 1  # 0: flat out
N_FVARS = 2

MAX_PACKETS_PER_CALL = 64  # bounds one publish_due call

Publisher = namedtuple("Publisher", "sim records buf session ivars fvars")
Publisher.__doc__ = "The session's messages, one packet's bytes and the publisher's state."


def new_publisher(  # noqa: PLR0913 -- the session's whole description
    feed_config,
    fd: int,
    session: np.ndarray,
    messages: int,
    rate: int,
    replay: np.ndarray | None = None,
    per_packet: int = MAX_MESSAGES_PER_PACKET,
    drop_every: int = 0,
    heartbeat_ns: int = 100_000_000,
) -> Publisher:
    """A publisher of ``messages`` messages (the simulator's, or the first of ``replay``) at
    ``rate`` per second (0: flat out) to connected UDP socket ``fd``."""
    if replay is not None:
        messages = min(messages, len(replay))
        records = np.array(replay[:messages], dtype=MARKET_DATA)
    else:
        records = np.zeros(messages, MARKET_DATA)  # pages are touched as the session goes
    ivars = np.zeros(N_IVARS, np.int64)
    ivars[P_FD] = fd
    ivars[P_TOTAL] = messages
    ivars[P_PER_PACKET] = per_packet
    ivars[P_DROP_EVERY] = drop_every
    ivars[P_REPLAYING] = replay is not None
    ivars[P_HEARTBEAT_NS] = heartbeat_ns
    fvars = np.zeros(N_FVARS, np.float64)
    fvars[F_INTERVAL_NS] = 1e9 / rate if rate > 0 else 0.0
    return Publisher(
        new_simulator(feed_config),
        records,
        np.zeros(MAX_DATAGRAM, np.uint8),
        np.asarray(session, np.uint8),
        ivars,
        fvars,
    )


@kernel
def published_count(pub):
    """Messages published so far: the recovery service may re-send these (acquire)."""
    return load_acquire(pub.ivars, P_PUBLISHED)


@kernel
def _send(pub, length, now):
    iv = pub.ivars
    iv[P_PACKETS] += 1
    iv[P_LAST_SEND_NS] = now
    if iv[P_DROP_EVERY] > 0 and iv[P_PACKETS] % iv[P_DROP_EVERY] == 0:
        iv[P_LEFT_OUT] += 1
        return
    # a connected UDP socket reports an earlier ICMP "port unreachable" (no feed listening
    # yet) on the next send: counted, and the packet is the recovery service's to re-send
    if send(iv[P_FD], pub.buf.ctypes.data, length, MSG_DONTWAIT) != length:
        iv[P_SEND_ERRORS] += 1


@kernel
def publish_due(pub, now):
    """Send the messages due by ``now``; returns how many. A heartbeat when none has gone out
    for the heartbeat interval."""
    iv, fv, recs = pub.ivars, pub.fvars, pub.records
    interval = fv[F_INTERVAL_NS]
    if iv[P_PUBLISHED] == 0 and fv[F_NEXT_NS] == 0.0:
        fv[F_NEXT_NS] = np.float64(now)  # the schedule starts with the first call
    published = 0
    for _ in range(MAX_PACKETS_PER_CALL):
        start = iv[P_PUBLISHED]
        count = 0
        while count < iv[P_PER_PACKET] and start + count < iv[P_TOTAL]:
            intended = now
            if interval > 0.0:
                if fv[F_NEXT_NS] > now:
                    break
                intended = np.int64(fv[F_NEXT_NS])
                fv[F_NEXT_NS] += sim_next_interval_ns(pub.sim, interval)
            i = start + count
            if iv[P_REPLAYING] == 0:
                sim_next(pub.sim, recs, i)
            recs[i].seq = i + 1
            recs[i].send_ns = intended
            count += 1
        if count == 0:
            break
        length = packet_build(pub.buf, pub.session, start + 1, recs, start, count)
        store_release(iv, P_PUBLISHED, start + count)  # recovery may serve them from now
        _send(pub, length, now)
        published += count
    if published == 0 and now - iv[P_LAST_SEND_NS] >= iv[P_HEARTBEAT_NS]:
        length = packet_build(pub.buf, pub.session, iv[P_PUBLISHED] + 1, recs, 0, 0)
        iv[P_HEARTBEATS] += 1
        iv[P_LAST_SEND_NS] = now
        send(iv[P_FD], pub.buf.ctypes.data, length, MSG_DONTWAIT)
    return published


@kernel
def publish_end(pub, now):
    """Send the end of the session, numbered with the next sequence number (never left out)."""
    iv = pub.ivars
    length = packet_build(pub.buf, pub.session, iv[P_PUBLISHED] + 1, pub.records, 0, END_OF_SESSION)
    iv[P_LAST_SEND_NS] = now
    return send(iv[P_FD], pub.buf.ctypes.data, length, MSG_DONTWAIT) == length


@kernel
def next_due_ns(pub):
    """When the next message is due (0: at once, flat out or nothing left)."""
    if pub.ivars[P_PUBLISHED] >= pub.ivars[P_TOTAL] or pub.fvars[F_INTERVAL_NS] == 0.0:
        return np.int64(0)
    return np.int64(pub.fvars[F_NEXT_NS])
