"""libc's socket calls, callable from compiled code: the transports' hot path has no Python.

UDP sockets are opened, bound and joined to groups in Python (the ``socket`` module), once,
before the stage starts; the stage's kernel then busy-polls the file descriptor with these. TCP
connections are opened, and opened again after a drop, from compiled code (``tcp_link``): a
stage reconnects without leaving its loop. They are
numba ``ExternalFunction``s: the JIT links them by name against libc (loaded into its symbol
space below), so the kernels that call them are cached like any other, which a ctypes function
pointer, baked in as an address, would prevent.

Pointers are passed as ``intp`` (an array's ``.ctypes.data``): on x86_64 and aarch64 Linux a
pointer and a 64-bit integer are passed alike. Calls never block (``MSG_DONTWAIT``): -1 with
``errno()`` EAGAIN means nothing is there yet.
"""

from __future__ import annotations

import ctypes.util
import errno as errno_codes
import socket
from collections import namedtuple

import llvmlite.binding as llvm
import numpy as np
from numba import types

from service.kernels.jit import inline_kernel, kernel

llvm.load_library_permanently(ctypes.util.find_library("c"))

MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
MSG_NOSIGNAL = int(socket.MSG_NOSIGNAL)  # a send to a closed peer returns EPIPE, never SIGPIPE
# errno values as this platform's C library has them (plain ints: compiled in as constants)
EINTR = errno_codes.EINTR
EAGAIN = errno_codes.EAGAIN  # = EWOULDBLOCK
EALREADY = errno_codes.EALREADY
EINPROGRESS = errno_codes.EINPROGRESS
EISCONN = errno_codes.EISCONN
SOCK_STREAM = int(socket.SOCK_STREAM)
SOCK_NONBLOCK = int(socket.SOCK_NONBLOCK)
SOCK_CLOEXEC = int(socket.SOCK_CLOEXEC)
IPPROTO_TCP = int(socket.IPPROTO_TCP)
TCP_NODELAY = int(socket.TCP_NODELAY)

# ssize_t recv(int fd, void *buf, size_t len, int flags)
recv = types.ExternalFunction("recv", types.intp(types.int32, types.intp, types.uintp, types.int32))
# ssize_t send(int fd, const void *buf, size_t len, int flags)
send = types.ExternalFunction("send", types.intp(types.int32, types.intp, types.uintp, types.int32))
# int recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *timeout)
recvmmsg = types.ExternalFunction(
    "recvmmsg", types.int32(types.int32, types.intp, types.uint32, types.int32, types.intp)
)
# int sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags)
sendmmsg = types.ExternalFunction(
    "sendmmsg", types.int32(types.int32, types.intp, types.uint32, types.int32)
)
# int socket(int domain, int type, int protocol)
socket_open = types.ExternalFunction("socket", types.int32(types.int32, types.int32, types.int32))
# int connect(int fd, const struct sockaddr *addr, socklen_t len)
connect = types.ExternalFunction("connect", types.int32(types.int32, types.intp, types.uint32))
# int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
setsockopt = types.ExternalFunction(
    "setsockopt", types.int32(types.int32, types.int32, types.int32, types.intp, types.uint32)
)
# int close(int fd)
close = types.ExternalFunction("close", types.int32(types.int32))
_errno_location = types.ExternalFunction("__errno_location", types.CPointer(types.int32)())


@inline_kernel
def errno():
    """The calling thread's errno, after a call that returned -1."""
    return _errno_location()[0]


# struct mmsghdr on 64-bit Linux: a struct msghdr, then the byte count recvmmsg writes back.
MMSGHDR = np.dtype(
    [
        ("name", np.uintp),  # sockaddr * (0: the sender is not wanted)
        ("namelen", np.uint32),
        ("_pad0", np.uint32),
        ("iov", np.uintp),  # struct iovec *
        ("iovlen", np.uintp),
        ("control", np.uintp),
        ("controllen", np.uintp),
        ("flags", np.int32),
        ("_pad1", np.uint32),
        ("len", np.uint32),  # msg_len: the bytes received into this slot
        ("_pad2", np.uint32),
    ]
)
IOVEC = np.dtype([("base", np.uintp), ("len", np.uintp)])
assert MMSGHDR.itemsize == 64 and IOVEC.itemsize == 16

ReceiveBatch = namedtuple("ReceiveBatch", "headers iovecs data")
ReceiveBatch.__doc__ = """What one ``recvmmsg`` fills: ``data[k, :headers[k].len]`` is datagram k
(or what one ``sendmmsg`` sends: each ``data[k]`` whole). ``iovecs`` point into ``data``; keep
the tuple alive while a kernel uses it."""


def new_receive_batch(slots: int, datagram_bytes: int) -> ReceiveBatch:
    """Vectors for ``slots`` datagrams of up to ``datagram_bytes`` each, pointing at their data
    (built once in Python: the kernel only calls ``recvmmsg`` and reads ``headers.len``)."""
    data = np.zeros((slots, datagram_bytes), np.uint8)
    iovecs = np.zeros(slots, IOVEC)
    iovecs["base"] = data.ctypes.data + np.arange(slots, dtype=np.uintp) * datagram_bytes
    iovecs["len"] = datagram_bytes
    headers = np.zeros(slots, MMSGHDR)
    headers["iov"] = iovecs.ctypes.data + np.arange(slots, dtype=np.uintp) * IOVEC.itemsize
    headers["iovlen"] = 1
    return ReceiveBatch(headers, iovecs, data)


@kernel
def receive_batch(fd, batch):
    """Up to ``len(batch.headers)`` datagrams waiting on ``fd``, without blocking: how many
    (0 when none are waiting), or -errno on an error."""
    got = recvmmsg(fd, batch.headers.ctypes.data, batch.headers.shape[0], MSG_DONTWAIT, 0)
    if got >= 0:
        return np.int64(got)
    err = errno()
    return np.int64(0) if err in (EAGAIN, EINTR) else -np.int64(err)


@kernel
def send_batch(fd, batch, n):
    """Datagrams 0..n-1 of ``batch`` (each its iovec's full length) in one ``sendmmsg``, without
    blocking: how many went (0 when the socket is full), or -errno on an error."""
    sent = sendmmsg(fd, batch.headers.ctypes.data, n, MSG_DONTWAIT)
    if sent >= 0:
        return np.int64(sent)
    err = errno()
    return np.int64(0) if err in (EAGAIN, EINTR) else -np.int64(err)
