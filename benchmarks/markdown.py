"""One table cell of BENCHMARKS.md, shared by every section's renderer."""

from __future__ import annotations


def cell(value, kind: str) -> str:
    """`value` as `kind`: pct (fraction → %), ratio (2 decimals), times (×), int/bytes
    (thousands separators); anything else as it is (floats with %g). None is a dash."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "times":
        return f"{value:.1f}×"
    if kind in ("int", "bytes"):
        return f"{int(value):,}"
    return f"{value:g}" if isinstance(value, float) else str(value)
