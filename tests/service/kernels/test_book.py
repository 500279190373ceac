"""The L2 book kernels against a dict-based reference book, jitted and as plain Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.records import ASK, BID
from service.kernels.book import (
    Book,
    book_level_qty,
    book_reset,
    book_set_level,
    book_throughput_kernel,
    new_book,
)
from tests.support.alternatives import (
    EMPTY,
    ReferenceBook,
    needs_default_codegen,
    realistic_level_stream,
    refcount_ops,
)
from tests.support.warmups import warm_book

WINDOW = 64  # the smallest window: re-centring happens often in short random streams


@pytest.fixture(params=["jit", "py"])
def kernels(request):
    """(set_level, level_qty, reset): the compiled kernels, or their Python originals."""
    fns = (book_set_level, book_level_qty, book_reset)
    if request.param == "py":
        return tuple(fn.py_func for fn in fns)
    return fns


def assert_same(book: Book, inst: int, ref: ReferenceBook, level_qty) -> None:
    """Bests, window position and every level in the window equal the reference."""
    assert book.best_bid[inst] == ref.best_bid
    assert book.best_ask[inst] == ref.best_ask
    assert book.base[inst] == ref.base
    window = book.bid_qty.shape[1]
    if ref.base:
        prices = np.arange(ref.base, ref.base + window)
        for side in (BID, ASK):
            expected = [ref.qty(side, int(p)) for p in prices]
            got = [level_qty(book, inst, side, int(p)) for p in prices]
            assert got == expected
    # Outside the window nothing is held.
    for price in (ref.base - 1, ref.base + window, 1, 10**9):
        if not ref.in_window(price):
            assert level_qty(book, inst, BID, price) == 0
            assert level_qty(book, inst, ASK, price) == 0


def random_ops(rng: np.random.Generator, n: int, n_instruments: int):
    """Level updates clustered around a wandering price, with rare far jumps and bad input."""
    centre = [5_000] * n_instruments
    for _ in range(n):
        inst = int(rng.integers(n_instruments))
        r = rng.random()
        if r < 0.02:
            centre[inst] = int(rng.integers(1, 20_000))  # far jump: forces re-centring
        elif r < 0.05:
            centre[inst] += int(rng.integers(-40, 41))  # near the edge of the window
        side = BID if rng.random() < 0.5 else ASK
        price = max(centre[inst] + int(rng.integers(-20, 21)), 1)
        if rng.random() < 0.005:
            price = -int(rng.integers(0, 3))  # non-positive price: must be ignored
        qty = 0 if rng.random() < 0.35 else int(rng.integers(1, 1_000))
        if rng.random() < 0.01:
            qty = -5  # negative size behaves as a removal
        yield inst, side, price, qty


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_stream_matches_reference(kernels, seed):
    set_level, level_qty, _ = kernels
    rng = np.random.default_rng(seed)
    book = new_book(3, WINDOW)
    refs = [ReferenceBook(WINDOW) for _ in range(3)]
    for step, (inst, side, price, qty) in enumerate(random_ops(rng, 1_500, 3)):
        set_level(book, inst, side, price, qty)
        refs[inst].set_level(side, price, qty)
        assert book.best_bid[inst] == refs[inst].best_bid
        assert book.best_ask[inst] == refs[inst].best_ask
        if step % 97 == 0:
            assert_same(book, inst, refs[inst], level_qty)
    for inst in range(3):
        assert_same(book, inst, refs[inst], level_qty)


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # instrument
        st.sampled_from([BID, ASK]),
        st.one_of(st.integers(90, 140), st.integers(1, 400)),  # mostly near, sometimes far
        st.one_of(st.just(0), st.integers(1, 50)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops_strategy)
def test_any_sequence_matches_reference(ops):
    book = new_book(2, WINDOW)
    refs = [ReferenceBook(WINDOW), ReferenceBook(WINDOW)]
    for inst, side, price, qty in ops:
        book_set_level(book, inst, side, price, qty)
        refs[inst].set_level(side, price, qty)
        assert book.best_bid[inst] == refs[inst].best_bid
        assert book.best_ask[inst] == refs[inst].best_ask
    for inst in range(2):
        assert_same(book, inst, refs[inst], book_level_qty)


def test_realistic_stream_matches_reference():
    insts, sides, prices, qtys = realistic_level_stream(np.random.default_rng(7), 4, 20_000)
    book = new_book(4, 256)
    refs = [ReferenceBook(256) for _ in range(4)]
    for inst, side, price, qty in zip(insts, sides, prices, qtys, strict=True):
        book_set_level(book, inst, side, price, qty)
        refs[inst].set_level(int(side), int(price), int(qty))
        assert book.best_bid[inst] == refs[inst].best_bid
        assert book.best_ask[inst] == refs[inst].best_ask
    for inst in range(4):
        assert_same(book, inst, refs[inst], book_level_qty)


def test_first_level_centres_the_window_and_base_stays_positive(kernels):
    set_level, level_qty, _ = kernels
    book = new_book(2, WINDOW)
    set_level(book, 0, BID, 1_000, 5)
    assert book.base[0] == 1_000 - WINDOW // 2
    set_level(book, 1, ASK, 3, 7)  # near zero: base clamps to 1, the level still fits
    assert book.base[1] == 1
    assert level_qty(book, 1, ASK, 3) == 7
    assert (book.best_bid[1], book.best_ask[1]) == (EMPTY, 3)


def test_recentring_keeps_levels_that_fit(kernels):
    set_level, level_qty, _ = kernels
    book = new_book(1, WINDOW)
    set_level(book, 0, BID, 100, 1)  # base 68, window 68..131
    set_level(book, 0, BID, 80, 2)
    set_level(book, 0, ASK, 120, 3)
    set_level(book, 0, ASK, 140, 4)  # outside: base 108, window 108..171
    assert book.base[0] == 108
    assert level_qty(book, 0, BID, 100) == 0  # fell out of the window
    assert level_qty(book, 0, ASK, 120) == 3
    assert (book.best_bid[0], book.best_ask[0]) == (EMPTY, 120)
    set_level(book, 0, BID, 60, 9)  # far below: base 28; the asks above 91 are dropped
    assert book.base[0] == 28
    assert (book.best_bid[0], book.best_ask[0]) == (60, EMPTY)


def test_removing_outside_the_window_does_not_move_it(kernels):
    set_level, level_qty, _ = kernels
    book = new_book(1, WINDOW)
    set_level(book, 0, BID, 100, 1)
    set_level(book, 0, ASK, 10_000, 0)
    assert book.base[0] == 100 - WINDOW // 2
    assert level_qty(book, 0, BID, 100) == 1


def test_removing_the_best_finds_the_next_level(kernels):
    set_level, _, _ = kernels
    book = new_book(1, WINDOW)
    for price in (100, 97, 95):
        set_level(book, 0, BID, price, 1)
    for price in (101, 104):
        set_level(book, 0, ASK, price, 1)
    set_level(book, 0, BID, 100, 0)
    set_level(book, 0, ASK, 101, 0)
    assert (book.best_bid[0], book.best_ask[0]) == (97, 104)
    set_level(book, 0, BID, 96, 0)  # not the best: bests unchanged
    assert book.best_bid[0] == 97
    for price in (97, 95):
        set_level(book, 0, BID, price, 0)
    set_level(book, 0, ASK, 104, 0)
    assert (book.best_bid[0], book.best_ask[0]) == (EMPTY, EMPTY)


def test_reset_clears_one_instrument_only(kernels):
    set_level, level_qty, reset = kernels
    book = new_book(2, WINDOW)
    for inst in (0, 1):
        set_level(book, inst, BID, 100, 1)
        set_level(book, inst, ASK, 101, 1)
    base = book.base[0]
    reset(book, 0)
    assert (book.best_bid[0], book.best_ask[0]) == (EMPTY, EMPTY)
    assert book.base[0] == base
    assert not book.bid_qty[0].any() and not book.ask_qty[0].any()
    assert (book.best_bid[1], book.best_ask[1]) == (100, 101)
    set_level(book, 0, ASK, 102, 4)  # the kept window is reused
    assert level_qty(book, 0, ASK, 102) == 4 and book.base[0] == base


@pytest.mark.parametrize("impl", ["jit", "py"])
def test_throughput_kernel_applies_every_update(impl):
    insts, sides, prices, qtys = realistic_level_stream(np.random.default_rng(3), 2, 2_000)
    fn = book_throughput_kernel if impl == "jit" else book_throughput_kernel.py_func
    book = new_book(2, 256)
    checksum = fn(book, insts, sides, prices, qtys, 2)
    refs = [ReferenceBook(256), ReferenceBook(256)]
    expected = 0
    for _ in range(2):
        for inst, side, price, qty in zip(insts, sides, prices, qtys, strict=True):
            refs[inst].set_level(int(side), int(price), int(qty))
            expected += refs[inst].best_bid ^ refs[inst].best_ask
    assert checksum == expected
    assert [book.best_bid[i] for i in range(2)] == [r.best_bid for r in refs]


@pytest.mark.parametrize(
    ("n", "window", "message"),
    [
        (0, 64, "n_instruments must be >= 1"),
        (1, 32, r"power of two >= 64 \(got 32\)"),
        (1, 96, r"power of two >= 64 \(got 96\)"),
    ],
)
def test_new_book_rejects_bad_sizes(n, window, message):
    with pytest.raises(ValueError, match=message):
        new_book(n, window)


def test_each_kernel_compiles_one_signature_after_warm_up():
    warm_book()
    for fn in (book_set_level, book_level_qty, book_reset, book_throughput_kernel):
        assert len(fn.signatures) == 1, (fn.__name__, fn.signatures)


@needs_default_codegen
@pytest.mark.parametrize("fn", [book_set_level, book_level_qty, book_reset])
def test_per_message_kernels_leave_no_refcount_operations(fn):
    """A regression here costs a third of the book's throughput (see book_set_level)."""
    warm_book()
    assert refcount_ops(fn, fn.signatures[0]) == 0
