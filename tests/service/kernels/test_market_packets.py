"""Sequenced market-data packets: the kernels against the wire contract, every malformed shape
counted and dropped (fuzzed), and datagrams really sent over loopback and read by recvmmsg
from compiled code."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.records import ASK, BID, LEVEL, MARKET_DATA, SNAPSHOT_BEGIN, SNAPSHOT_END, TRADE
from contracts.wire import (
    END_OF_SESSION,
    LENGTH_PREFIX,
    MAX_DATAGRAM,
    MAX_MESSAGES_PER_PACKET,
    MD_MESSAGE,
    PACKET_HEADER,
)
from service.kernels import market_packets as mp
from service.kernels.sockets import new_receive_batch, receive_batch

SESSION = mp.session_bytes("LOWLAT0001")
N_INSTRUMENTS = 4


def records(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, MARKET_DATA)
    out["kind"] = rng.choice([LEVEL, TRADE, SNAPSHOT_BEGIN, SNAPSHOT_END], n)
    out["side"] = rng.integers(0, 2, n)
    out["instrument"] = rng.integers(0, N_INSTRUMENTS, n)
    out["price"] = rng.integers(1, 1 << 40, n)
    out["qty"] = rng.integers(0, 1 << 31, n)
    out["send_ns"] = rng.integers(0, 1 << 62, n)
    return out


def build(recs: np.ndarray, seq: int = 1, session=SESSION) -> bytes:
    buf = np.zeros(MAX_DATAGRAM, np.uint8)
    n = mp.packet_build(buf, session, seq, recs, 0, len(recs))
    return buf[:n].tobytes()


def check(packet: bytes, n_instruments: int = N_INSTRUMENTS):
    buf = np.zeros(max(len(packet), 1), np.uint8)
    buf[: len(packet)] = np.frombuffer(packet, np.uint8)
    return mp.packet_check(buf, len(packet), SESSION, n_instruments)


def decode(packet: bytes) -> np.ndarray:
    verdict, seq, count = check(packet)
    assert verdict == mp.P_DATA
    buf = np.frombuffer(packet, np.uint8).copy()
    out = np.zeros(count, MARKET_DATA)
    for m in range(count):
        mp.packet_message(buf, m, seq + m, out, m)
    return out


def test_a_packet_reads_back_as_the_records_it_was_built_from():
    recs = records(MAX_MESSAGES_PER_PACKET)
    packet = build(recs, seq=1_000_001)
    assert len(packet) <= MAX_DATAGRAM
    got = decode(packet)
    assert (got["seq"] == np.arange(1_000_001, 1_000_001 + len(recs))).all()
    for name in ("send_ns", "price", "qty", "instrument", "kind", "side"):
        assert (got[name] == recs[name]).all(), name


def test_the_kernels_write_the_bytes_the_contract_describes():
    """numpy reads the packet with the contract's dtypes alone: the kernels' offsets agree."""
    recs = records(3, seed=2)
    packet = build(recs, seq=77)
    header = np.frombuffer(packet[: PACKET_HEADER.itemsize], PACKET_HEADER)[0]
    assert header["session"] == b"LOWLAT0001" and header["seq"] == 77 and header["count"] == 3
    slot = LENGTH_PREFIX + MD_MESSAGE.itemsize
    for m in range(3):
        at = PACKET_HEADER.itemsize + m * slot
        assert int.from_bytes(packet[at : at + LENGTH_PREFIX], "big") == MD_MESSAGE.itemsize
        message = np.frombuffer(packet[at + LENGTH_PREFIX : at + slot], MD_MESSAGE)[0]
        for name in MD_MESSAGE.names:
            assert message[name] == recs[m][name], name


def test_heartbeat_and_end_of_session():
    empty = np.zeros(0, MARKET_DATA)
    assert check(build(empty, seq=42)) == (mp.P_HEARTBEAT, 42, 0)
    buf = np.zeros(64, np.uint8)
    n = mp.packet_build(buf, SESSION, 43, empty, 0, END_OF_SESSION)
    assert check(buf[:n].tobytes()) == (mp.P_END, 43, 0)


def _with(packet: bytes, at: int, value: bytes) -> bytes:
    return packet[:at] + value + packet[at + len(value) :]


FIRST = PACKET_HEADER.itemsize  # the first message's length prefix
BODY = FIRST + LENGTH_PREFIX  # its body


@pytest.mark.parametrize(
    ("what", "mangle"),
    [
        ("a byte missing", lambda p: p[:-1]),
        ("a byte too many", lambda p: p + b"\0"),
        ("the header cut short", lambda p: p[: PACKET_HEADER.itemsize - 1]),
        ("sequence number 0", lambda p: _with(p, 10, bytes(8))),
        ("sequence number beyond 2^63", lambda p: _with(p, 10, b"\x80" + bytes(7))),
        ("a count larger than the packet", lambda p: _with(p, 18, (3).to_bytes(2, "big"))),
        ("a message length of 23", lambda p: _with(p, FIRST, (23).to_bytes(2, "big"))),
        ("kind 0", lambda p: _with(p, BODY, b"\0")),
        ("kind 5 (an order event: not on this feed)", lambda p: _with(p, BODY, b"\5")),
        ("side 2", lambda p: _with(p, BODY + 1, b"\2")),
        ("instrument 4 of 4", lambda p: _with(p, BODY + 2, (4).to_bytes(2, "big"))),
        ("a negative size", lambda p: _with(p, BODY + 4, b"\xff\xff\xff\xff")),
        ("price 0", lambda p: _with(p, BODY + 8, bytes(8))),
        ("an end of session with messages", lambda p: _with(p, 18, b"\xff\xff")),
    ],
)
def test_a_malformed_packet_is_refused_whole(what, mangle):
    recs = records(2, seed=3)
    recs["kind"] = LEVEL
    recs["side"] = [BID, ASK]
    packet = build(recs)
    assert check(packet)[0] == mp.P_DATA
    assert check(mangle(packet))[0] == mp.P_MALFORMED, what


def test_another_session_is_told_apart():
    packet = build(records(2), session=mp.session_bytes("OTHER"))
    assert check(packet)[0] == mp.P_WRONG_SESSION


@pytest.mark.parametrize("name", ["", "ELEVEN_CHARS", "tab\there", "é"])
def test_a_session_name_that_cannot_be_sent_is_refused(name):
    with pytest.raises(ValueError, match="printable ASCII"):
        mp.session_bytes(name)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=MAX_DATAGRAM + 8), flips=st.lists(st.integers(0, 10_000)))
def test_no_datagram_makes_the_decoder_misbehave(data, flips):
    """Random bytes, and valid packets with random bytes changed: a verdict, never a crash,
    and whatever passes decodes into records inside the contract's ranges."""
    packet = bytearray(build(records(5, seed=len(data))))
    for flip in flips:
        packet[flip % len(packet)] ^= 1 + flip % 255
    for candidate in (data, SESSION.tobytes() + data, bytes(packet)):
        verdict, seq, count = check(candidate)
        assert verdict in (mp.P_DATA, mp.P_HEARTBEAT, mp.P_END, mp.P_MALFORMED, mp.P_WRONG_SESSION)
        if verdict == mp.P_DATA:
            got = decode(candidate)
            assert len(got) == count and seq >= 1
            assert (got["instrument"] < N_INSTRUMENTS).all() and (got["side"] <= 1).all()
            assert np.isin(got["kind"], [LEVEL, TRADE, SNAPSHOT_BEGIN, SNAPSHOT_END]).all()


def test_datagrams_sent_over_loopback_are_read_by_recvmmsg_from_compiled_code():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        batch = new_receive_batch(16, MAX_DATAGRAM)
        assert receive_batch(receiver.fileno(), batch) == 0  # nothing yet: no block, no error
        recs = records(40 * MAX_MESSAGES_PER_PACKET, seed=4)
        step = MAX_MESSAGES_PER_PACKET
        for k in range(40):
            sender.sendto(
                build(recs[k * step : (k + 1) * step], 1 + k * step), receiver.getsockname()
            )
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 40 and time.monotonic() < deadline:
            for k in range(receive_batch(receiver.fileno(), batch)):
                got.append(batch.data[k, : batch.headers[k]["len"]].tobytes())
        assert len(got) == 40
        decoded = np.concatenate([decode(p) for p in got])
        assert (decoded["seq"] == np.arange(1, len(recs) + 1)).all()
        assert (decoded["price"] == recs["price"]).all()
    assert receive_batch(receiver.fileno(), batch) < 0  # closed: -errno, not a crash
