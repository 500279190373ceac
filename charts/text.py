"""Numbers as the reports print them, and plain-text tables (``statistics.txt``).

Standard library only: the text of a report never needs matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence


def fmt_us(ns: float | None) -> str:
    """Nanoseconds in microseconds, 2 decimals; "-" for no data."""
    return "-" if ns is None else f"{ns / 1000:,.2f}"


def fmt_rate(rate: float | None) -> str:
    """A rate or a count, whole, with thousands separators; "-" for no data."""
    return "-" if rate is None else f"{rate:,.0f}"


def fmt_ns(ns: float | None) -> str:
    """A latency in the unit that suits it: ns, µs or ms; "-" for no data."""
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.2f} µs"
    return f"{ns:,.0f} ns"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a rule
    under the header; ``title`` above it when given."""
    widths = [len(h) for h in header]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns: {row}")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        shown = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(shown).rstrip()

    lines = [title] if title else []
    lines += [line(header), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in rows]
    return "\n".join(lines) + "\n"
