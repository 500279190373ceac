"""The kernels ``bench --transports`` times: one 64-byte message there and back, and a stream of
them, over the ring, a UDP socket and a TCP connection. Nothing here runs in production.

The socket kernels make the calls the feed and the gateway make (``sockets``: ``send``, ``recv``,
``recvmmsg``, never blocking) and busy-poll like them; the C reference
(``service/bench/baseline/socket_pingpong.c``) runs the same loops, so a ratio of the two is the
cost of calling libc from numba. Both read the clock once per round trip for the sample and, while
they wait, once every ``CLOCK_EVERY`` polls for the timeout.
"""

from __future__ import annotations

import errno as errno_codes

import numpy as np

from service.kernels.atomics import monotonic_ns
from service.kernels.jit import kernel
from service.kernels.ring import ring_push_batch, ring_try_pop
from service.kernels.sockets import (
    EAGAIN,
    EINTR,
    MSG_DONTWAIT,
    MSG_NOSIGNAL,
    errno,
    receive_batch,
    recv,
    send,
    send_batch,
)

# one message: a sequence number, the sender's clock and a body, 64 bytes (a market-data update
# or an order is about this size)
MESSAGE = np.dtype([("seq", "<i8"), ("stamp", "<i8"), ("body", "<i8", (6,))])
MESSAGE_BYTES = MESSAGE.itemsize
assert MESSAGE_BYTES == 64
STOP = -1  # the seq that ends an echo
CLOCK_EVERY = 256  # polls between two clock reads while waiting
ETIMEDOUT = errno_codes.ETIMEDOUT


@kernel
def send_all(fd, ptr, size, deadline_ns):
    """Send ``size`` bytes from ``ptr`` (a TCP send may take part): ``size``, or -errno
    (-ETIMEDOUT when the socket stays full past ``deadline_ns``)."""
    done = 0
    polls = 0
    while done < size:
        n = send(fd, ptr + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL)
        if n > 0:
            done += n
            continue
        err = errno()
        if err != EAGAIN and err != EINTR:
            return -np.int64(err)
        polls += 1
        if polls % CLOCK_EVERY == 0 and monotonic_ns() > deadline_ns:
            return -np.int64(ETIMEDOUT)
    return np.int64(done)


@kernel
def recv_all(fd, ptr, size, deadline_ns):
    """Receive ``size`` bytes into ``ptr`` (one datagram, or a TCP stream's next bytes):
    ``size``, 0 when the peer closed, or -errno (-ETIMEDOUT past ``deadline_ns``)."""
    done = 0
    polls = 0
    while done < size:
        n = recv(fd, ptr + done, size - done, MSG_DONTWAIT)
        if n > 0:
            done += n
            continue
        if n == 0:
            return np.int64(0)
        err = errno()
        if err != EAGAIN and err != EINTR:
            return -np.int64(err)
        polls += 1
        if polls % CLOCK_EVERY == 0 and monotonic_ns() > deadline_ns:
            return -np.int64(ETIMEDOUT)
    return np.int64(done)


@kernel
def socket_rtt_initiator(fd, out, back, samples, timeout_ns):
    """Send message i, wait for its echo, ``len(samples)`` times; ``samples[i]`` is the round
    trip in ns, -1 for a message (UDP) whose echo did not come within ``timeout_ns``.

    Returns 0, or -errno of the call that failed. A late echo of a lost round is skipped.
    """
    out_ptr, back_ptr = out.ctypes.data, back.ctypes.data
    for i in range(samples.shape[0]):
        out[0]["seq"] = i
        t0 = monotonic_ns()
        out[0]["stamp"] = t0
        n = send_all(fd, out_ptr, MESSAGE_BYTES, t0 + timeout_ns)
        if n < 0:
            return n
        samples[i] = -1
        while True:
            n = recv_all(fd, back_ptr, MESSAGE_BYTES, t0 + timeout_ns)
            if n == -ETIMEDOUT:
                break
            if n <= 0:
                return n if n < 0 else -np.int64(errno_codes.ECONNRESET)
            if back[0]["seq"] == i:
                samples[i] = monotonic_ns() - t0
                break
    return np.int64(0)


@kernel
def socket_echo(fd, buf, idle_ns):
    """Send every message back until one with seq ``STOP`` (echoed too), the peer closes, or
    nothing comes for ``idle_ns``: how many were echoed, or -errno."""
    ptr = buf.ctypes.data
    echoed = 0
    while True:
        n = recv_all(fd, ptr, MESSAGE_BYTES, monotonic_ns() + idle_ns)
        if n == -ETIMEDOUT or n == 0:
            return np.int64(echoed)
        if n < 0:
            return n
        n = send_all(fd, ptr, MESSAGE_BYTES, monotonic_ns() + idle_ns)
        if n < 0:
            return n
        echoed += 1
        if buf[0]["seq"] == STOP:
            return np.int64(echoed)


@kernel
def paced_sender(fd, out, count, rate, timeout_ns):
    """Send messages 0..count-1, message i due at i/rate s after the start, one ``send`` each
    (a late sender sends back to back until it is on time): the ns it took, or -errno."""
    ptr = out.ctypes.data
    start = monotonic_ns()
    for i in range(count):
        due = start + (i * np.int64(1_000_000_000)) // rate
        now = monotonic_ns()
        while now < due:
            now = monotonic_ns()
        out[0]["seq"] = i
        out[0]["stamp"] = now
        n = send_all(fd, ptr, MESSAGE_BYTES, now + timeout_ns)
        if n < 0:
            return n
    return monotonic_ns() - start


@kernel
def paced_datagram_sender(fd, batch, words, count, rate, timeout_ns):
    """``paced_sender`` for datagrams, the way a publisher sends: every message due by now (up
    to a batch) goes in one ``sendmmsg``, a datagram each; ``rate`` 0 sends as fast as the
    socket takes them. ``words`` is ``batch.data`` seen as int64s. The ns it took, or -errno."""
    start = monotonic_ns()
    slots = batch.headers.shape[0]
    i = 0
    while i < count:
        now = monotonic_ns()
        due = count if rate == 0 else min(count, (now - start) * rate // 1_000_000_000 + 1)
        n = min(due - i, slots)
        if n <= 0:
            continue
        for k in range(n):
            words[k, 0] = i + k
            words[k, 1] = now
        sent = send_batch(fd, batch, n)
        if sent < 0:
            return sent
        if sent == 0 and now - start > timeout_ns + count * np.int64(1_000_000_000) // max(rate, 1):
            return -np.int64(ETIMEDOUT)
        i += sent
    return monotonic_ns() - start


@kernel
def datagram_counter(fd, batch, words, count, idle_ns, seen):
    """Receive the paced sender's datagrams (``recvmmsg``, as the feed does) until ``count``
    have come or none for ``idle_ns``: (received, out of order, ns from first to last), the
    last -errno if a call failed.
    ``words`` is ``batch.data`` seen as int64s; ``seen[seq]`` is set for each one received."""
    received = 0
    disordered = 0
    expected = 0
    first = 0
    last = monotonic_ns()
    deadline = last + idle_ns
    polls = 0
    while received < count:
        got = receive_batch(fd, batch)
        if got < 0:
            return received, disordered, got
        if got == 0:
            polls += 1
            if polls % CLOCK_EVERY == 0 and monotonic_ns() > deadline:
                break
            continue
        last = monotonic_ns()
        if first == 0:
            first = last
        deadline = last + idle_ns
        for k in range(got):
            seq = words[k, 0]
            if 0 <= seq < count and not seen[seq]:
                seen[seq] = True
                received += 1
                if seq != expected:
                    disordered += 1
                expected = seq + 1
    return received, disordered, last - first


@kernel
def stream_counter(fd, buf, count, idle_ns):
    """Read the paced sender's messages from a TCP stream, in order, until ``count`` have come,
    the peer closes or none for ``idle_ns``: (received, out of order, ns from first to last)."""
    ptr = buf.ctypes.data
    received = 0
    disordered = 0
    first = 0
    last = 0
    while received < count:
        n = recv_all(fd, ptr, MESSAGE_BYTES, monotonic_ns() + idle_ns)
        if n <= 0:
            break
        last = monotonic_ns()
        if first == 0:
            first = last
        if buf[0]["seq"] != received:
            disordered += 1
        received += 1
    return received, disordered, last - first


@kernel
def ring_rtt_initiator(out_ring, in_ring, out, back, samples):
    """The socket round trip's shape over two rings of ``MESSAGE`` records."""
    for i in range(samples.shape[0]):
        out[0]["seq"] = i
        t0 = monotonic_ns()
        out[0]["stamp"] = t0
        while ring_push_batch(out_ring, out, 1) == 0:
            pass
        while not ring_try_pop(in_ring, back, 0):
            pass
        samples[i] = monotonic_ns() - t0 if back[0]["seq"] == i else -1


@kernel
def ring_echo(in_ring, out_ring, buf, rounds):
    for _ in range(rounds):
        while not ring_try_pop(in_ring, buf, 0):
            pass
        while ring_push_batch(out_ring, buf, 1) == 0:
            pass


@kernel
def ring_paced_producer(r, out, count, rate):
    """``paced_sender`` over the ring: message i due at i/rate s; the ring full is a wait."""
    start = monotonic_ns()
    for i in range(count):
        due = start + (i * np.int64(1_000_000_000)) // rate
        now = monotonic_ns()
        while now < due:
            now = monotonic_ns()
        out[0]["seq"] = i
        out[0]["stamp"] = now
        while ring_push_batch(r, out, 1) == 0:
            pass
    return monotonic_ns() - start


@kernel
def ring_counter(r, buf, count):
    """Read ``count`` messages off the ring: (received, out of order, ns from first to last)."""
    disordered = 0
    first = 0
    last = 0
    for i in range(count):
        while not ring_try_pop(r, buf, 0):
            pass
        last = monotonic_ns()
        if first == 0:
            first = last
        if buf[0]["seq"] != i:
            disordered += 1
    return count, disordered, last - first
