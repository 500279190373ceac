"""What the memory-ordering primitives become on Graviton, read from the code LLVM emits.

Each primitive (and each ring function that publishes or acquires an index) is compiled by
numba here, on whatever machine runs the tests; the native function's LLVM IR is then
assembled for aarch64 with llvmlite and the instructions that carry the ordering are looked
for: ``stlr`` for release stores, ``ldar`` (armv8.0) or ``ldapr`` (Neoverse N1, RCpc) for
acquire loads, ``dmb ish`` / ``dmb ishld`` for fences. The x86-64 assembly of the same IR has
none of them (plain moves), which is exactly why x86 test runs cannot prove arm64 correctness.

Also: ``monotonic_ns`` and ``bit_length`` against Python's own.
"""

from __future__ import annotations

import re
import time

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.kernels.atomics import (
    bit_length,
    fence_acquire,
    fence_release,
    load_acquire,
    load_relaxed,
    monotonic_ns,
    store_relaxed,
    store_release,
)
from service.kernels.control import get_word, set_word
from service.kernels.ring import ring_claim, ring_publish, ring_readable, ring_release
from service.kernels.seqlock import publish_section, read_section, set_state
from service.runtime.segments import create_ring
from tests.support.atomics_extra import fetch_add_relaxed

ARM64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"
N1 = "neoverse-n1"  # Graviton2
ARMV8_0 = ""  # generic: no RCpc, so acquire loads are ldar

llvm.initialize_all_targets()
llvm.initialize_all_asmprinters()


# --------------------------------------------------------------------------- functions under test
# Plain numba.njit (not the cached service kernel decorator): numba cannot show the IR of
# functions loaded from its cache.


@numba.njit
def acquire_load(a):
    return load_acquire(a, 3)


@numba.njit
def release_store(a, v):
    store_release(a, 3, v)


@numba.njit
def relaxed_load(a):
    return load_relaxed(a, 3)


@numba.njit
def relaxed_store(a, v):
    store_relaxed(a, 3, v)


@numba.njit
def acquire_fence():
    fence_acquire()


@numba.njit
def release_fence():
    fence_release()


@numba.njit
def spin_until_set(a):
    while load_acquire(a, 0) == 0:
        pass


@numba.njit
def plain_spin(a):
    while a[0] == 0:  # what not to write: LLVM may load a[0] once
        pass


@numba.njit
def publish(r, n):
    ring_publish(r, n)


@numba.njit
def release(r, n):
    ring_release(r, n)


@numba.njit
def claim(r, n):
    return ring_claim(r, n)


@numba.njit
def readable(r, n):
    return ring_readable(r, n)


@numba.njit
def control_get(c):
    return get_word(c, 16)


@numba.njit
def control_set(c, v):
    set_word(c, 16, v)


@numba.njit
def seqlock_write(shared, local):
    publish_section(shared, local, 16, 40, 123)


@numba.njit
def seqlock_read(shared, out):
    return read_section(shared, out, 16, 40, 10)


@numba.njit
def seqlock_state(shared, local):
    set_state(shared, local, 16, 4)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile every function above once with production argument types."""
    words = np.zeros(64, dtype=np.int64)
    _, ring = create_ring(tmp_path_factory.mktemp("ring"), "ring", np.int64, 8)
    calls = [
        (acquire_load, (words,)),
        (release_store, (words, 1)),
        (relaxed_load, (words,)),
        (relaxed_store, (words, 1)),
        (acquire_fence, ()),
        (release_fence, ()),
        (spin_until_set, (words,)),
        (plain_spin, (words,)),
        (publish, (ring, 0)),
        (release, (ring, 0)),
        (claim, (ring, 1)),
        (readable, (ring, 1)),
        (control_get, (words,)),
        (control_set, (words, 0)),
        (seqlock_write, (words, words.copy())),
        (seqlock_read, (words, words.copy())),
        (seqlock_state, (words, words.copy())),
    ]
    words[0] = 1  # so spin_until_set returns
    for fn, args in calls:
        fn(*args)
    return True


# --------------------------------------------------------------------------- IR to assembly

_SYMBOL = r'@("[^"]+"|[\w.$]+)'
_LINKAGE = r"^(?:linkonce_odr|weak_odr|internal|private|dso_local|available_externally) "


def native_ir(fn) -> str:
    """The numba native function of ``fn`` as a standalone LLVM module (no CPython wrapper)."""
    module = fn.inspect_llvm(fn.signatures[0])
    match = re.search(
        r'^define [^\n]*@"?_ZN(?!7cpython)[^\n]*' + fn.__name__ + r"[^\n]*\{.*?^\}",
        module,
        re.S | re.M,
    )
    assert match, f"no native function for {fn.__name__}"
    body = match.group(0)
    body = re.sub(r" #\d+", "", body)  # attribute groups: not copied
    body = re.sub(r", ![\w.]+ !\d+", "", body)  # metadata attachments: not copied
    defined = re.search(r"^define [^\n]*?" + _SYMBOL + r"\(", body).group(1)
    declarations = []
    for symbol in sorted(set(re.findall(_SYMBOL, body)) - {defined}):
        name = re.escape(symbol)
        glob = re.search(r"^@" + name + r" = [^\n]*$", module, re.M)
        if glob:
            declarations.append(glob.group(0))
            continue
        head = re.search(r"^(?:define|declare) ([^\n]*?@" + name + r"\([^\n]*)$", module, re.M)
        assert head, f"{symbol} is neither defined nor declared in the module"
        signature = re.sub(_LINKAGE, "", head.group(1))
        declarations.append("declare " + re.sub(r" (#\d+|\{)", "", signature))
    return "\n".join([*declarations, body])


def assembly_text(fn, triple: str, cpu: str) -> str:
    """The assembly of ``fn`` compiled for a target, as LLVM prints it."""
    target = llvm.Target.from_triple(triple)
    machine = target.create_target_machine(cpu=cpu, features="", opt=2)
    module = llvm.parse_assembly(f'target triple = "{triple}"\n' + native_ir(fn))
    module.data_layout = str(machine.target_data)
    module.verify()
    return machine.emit_assembly(module)


def assembly(fn, triple: str, cpu: str) -> list[str]:
    """The instructions (no directives, labels or comments) of ``fn`` compiled for a target."""
    lines = assembly_text(fn, triple, cpu).splitlines()
    return [line.strip() for line in lines if line.startswith("\t") and not line.startswith("\t.")]


def loop_loads(text: str, load: str) -> bool:
    """Whether some loop (a label branched back to from below) executes ``load`` each turn."""
    label = r"^(\.\w+):[^\n]*\n"
    body = r"(?:\t[^\n]*\n)*?"
    branch_back = r"\t(?:b|b\.\w+|cbn?z|tbn?z)\t[^\n]*\s\1\s"
    pattern = label + body + r"\t" + load + r"\t[^\n]*\n" + body + branch_back
    return re.search(pattern, text, re.M) is not None


def mnemonics(instructions: list[str]) -> list[str]:
    return [i.split()[0] for i in instructions if not i.startswith(("#", "//", ";"))]


@pytest.fixture(scope="module", autouse=True)
def _arm64_target():
    try:
        llvm.Target.from_triple(ARM64)
    except RuntimeError as exc:
        pytest.skip(f"this llvmlite has no AArch64 backend: {exc}")


# --------------------------------------------------------------------------- arm64


@pytest.mark.parametrize(("cpu", "acquire"), [(N1, "ldapr"), (ARMV8_0, "ldar")])
def test_acquire_load_is_ldar_or_ldapr(compiled, cpu, acquire):
    ops = mnemonics(assembly(acquire_load, ARM64, cpu))
    assert ops.count(acquire) == 1, ops
    assert "dmb" not in ops


@pytest.mark.parametrize("cpu", [N1, ARMV8_0])
def test_release_store_is_stlr(compiled, cpu):
    ops = mnemonics(assembly(release_store, ARM64, cpu))
    assert ops.count("stlr") == 1, ops
    assert "dmb" not in ops


@pytest.mark.parametrize("cpu", [N1, ARMV8_0])
def test_relaxed_accesses_carry_no_ordering(compiled, cpu):
    for fn in (relaxed_load, relaxed_store):
        ops = mnemonics(assembly(fn, ARM64, cpu))
        assert not {"ldar", "ldapr", "stlr", "dmb"} & set(ops), (fn.__name__, ops)
        assert {"ldr", "str"} & set(ops)


@pytest.mark.parametrize("cpu", [N1, ARMV8_0])
def test_fences_are_dmb(compiled, cpu):
    acquire = assembly(acquire_fence, ARM64, cpu)
    release = assembly(release_fence, ARM64, cpu)
    assert [i for i in acquire if i.startswith("dmb")] == ["dmb\tishld"]
    assert [i for i in release if i.startswith("dmb")] == ["dmb\tish"]


@pytest.mark.parametrize(("cpu", "acquire"), [(N1, "ldapr"), (ARMV8_0, "ldar")])
def test_spin_loop_reloads_inside_the_loop(compiled, cpu, acquire):
    """A spin on an acquire load loads every turn; a plain load is hoisted out of the loop."""
    assert loop_loads(assembly_text(spin_until_set, ARM64, cpu), acquire)
    assert not loop_loads(assembly_text(plain_spin, ARM64, cpu), r"ld\w*")


@pytest.mark.parametrize(("cpu", "acquire"), [(N1, "ldapr"), (ARMV8_0, "ldar")])
def test_ring_publishes_with_stlr_and_acquires_with_ldar(compiled, cpu, acquire):
    for fn in (publish, release, control_set):
        ops = mnemonics(assembly(fn, ARM64, cpu))
        assert ops.count("stlr") == 1, (fn.__name__, ops)
    for fn in (claim, readable, control_get):
        ops = mnemonics(assembly(fn, ARM64, cpu))
        assert ops.count(acquire) == 1, (fn.__name__, ops)
        assert "stlr" not in ops


@pytest.mark.parametrize(("cpu", "acquire"), [(N1, "ldapr"), (ARMV8_0, "ldar")])
def test_seqlock_orders_with_fences_and_release_acquire(compiled, cpu, acquire):
    for fn in (seqlock_write, seqlock_state):
        # odd sequence, release fence, data, then the even sequence with a release store
        ops = mnemonics(assembly(fn, ARM64, cpu))
        fences = [i for i in assembly(fn, ARM64, cpu) if i.startswith("dmb")]
        assert fences == ["dmb\tish"], (fn.__name__, fences)
        assert ops.count("stlr") == 1 and ops.index("dmb") < ops.index("stlr"), ops
    # acquire the sequence, copy, acquire fence, re-read the sequence
    instructions = assembly(seqlock_read, ARM64, cpu)
    ops = mnemonics(instructions)
    assert acquire in ops and "dmb\tishld" in instructions, ops
    assert ops.index(acquire) < ops.index("dmb")
    assert "stlr" not in ops


# --------------------------------------------------------------------------- x86-64 contrast


def test_x86_64_needs_no_instruction_for_acquire_or_release(compiled):
    """On x86 the same code is plain moves: a run on x86 proves nothing about the ordering."""
    for fn in (acquire_load, release_store, acquire_fence, release_fence, publish, readable):
        instructions = assembly(fn, X86_64, "")
        text = "\n".join(instructions)
        assert not re.search(r"\b(mfence|lfence|sfence|lock|xchg\w*)\b", text), (
            fn.__name__,
            instructions,
        )
    assert any(i.startswith("movq") for i in assembly(release_store, X86_64, ""))


# --------------------------------------------------------------------------- semantics


@numba.njit
def _exercise(a):
    store_release(a, 0, 11)
    store_relaxed(a, 1, 22)
    previous = fetch_add_relaxed(a, 2, 5)
    fence_release()
    fence_acquire()
    return load_acquire(a, 0), load_relaxed(a, 1), previous, a[2]


def test_atomics_read_and_write_the_element():
    a = np.zeros(4, dtype=np.int64)
    a[2] = 100
    assert _exercise(a) == (11, 22, 100, 105)
    assert a.tolist() == [11, 22, 105, 0]


def test_atomics_refuse_other_element_types():
    # a plain TypeError: numba passes non-numba exceptions from typing through unchanged
    with pytest.raises(TypeError, match="atomic access needs an int64 array"):
        _exercise(np.zeros(4, dtype=np.int32))


@numba.njit
def _release_into(a):
    store_release(a, 0, 1)


@numba.njit
def _relaxed_into(a):
    store_relaxed(a, 0, 1)


@numba.njit
def _add_into(a):
    fetch_add_relaxed(a, 0, 1)


def test_atomic_writes_refuse_read_only_arrays():
    a = np.zeros(4, dtype=np.int64)
    a.setflags(write=False)  # read-only flag over writable memory: no crash if written
    for fn in (_release_into, _relaxed_into, _add_into):
        with pytest.raises((TypeError, numba.core.errors.TypingError)):
            fn(a)
    assert not a.any()


@numba.njit
def _clock(n):
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = monotonic_ns()
    return out


def test_monotonic_ns_is_the_monotonic_clock():
    _clock(1)
    for _ in range(5):
        before = time.monotonic_ns()
        stamps = _clock(10_000)
        after = time.monotonic_ns()
        assert (np.diff(stamps) >= 0).all()
        assert before - 1_000_000 <= stamps[0] and stamps[-1] <= after + 1_000_000
        assert abs(int(stamps[0]) - before) < 1_000_000


@numba.njit
def _bit_lengths(values, out):
    for i in range(values.size):
        out[i] = bit_length(values[i])


def test_bit_length_matches_int_bit_length():
    values = sorted(
        {0, 1, 2, 3, 2**62, 2**63 - 1} | {2**k + d for k in range(63) for d in (-1, 0, 1)}
    )
    array = np.array(values, dtype=np.int64)
    out = np.empty_like(array)
    _bit_lengths(array, out)
    assert out.tolist() == [v.bit_length() for v in values]
    assert [bit_length(v) for v in values] == [v.bit_length() for v in values]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1))
def test_bit_length_of_any_value(value):
    out = np.empty(1, dtype=np.int64)
    _bit_lengths(np.array([value], dtype=np.int64), out)
    assert out[0] == bit_length(value) == value.bit_length()
