"""Statistics across runs and the printed tables (the JSON file holds every sample)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Table", "median", "ratio", "summarise"]

PHASES = ("insert", "update", "delete")


def median(values: Iterable[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


class Table:
    """A plain-text table with right-aligned numbers."""

    def __init__(self, title: str, headers: Sequence[str]) -> None:
        self.title = title
        self.headers = list(headers)
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> None:
        self.rows.append([_cell(c) for c in cells])

    def render(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
            for i, h in enumerate(self.headers)
        ]
        fmt = "  ".join(
            f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)
        )
        lines = [self.title, fmt.format(*self.headers), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row) for row in self.rows]
        return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians and ratios from the per-run samples of one backend (the small summary)."""
    summary: dict[str, Any] = {}
    write = results.get("write")
    if write:
        plain = write["runs"].get("plain", [])
        out: dict[str, Any] = {}
        for variant, runs in write["runs"].items():
            per_phase = {}
            for phase in PHASES:
                value = median(r[phase]["total"] for r in runs)
                base = median(r[phase]["total"] for r in plain)
                commit = median(r[phase]["commit"] for r in runs)
                commit_base = median(r[phase]["commit"] for r in plain)
                per_phase[phase] = {
                    "ms": None if value is None else value * 1000,
                    "ratio": ratio(value, base),
                    "commit_ms": None if commit is None else commit * 1000,
                    "commit_ratio": ratio(commit, commit_base),
                    "runs": len(runs),
                }
            out[variant] = per_phase
        summary["write"] = out
    flush = results.get("flush")
    if flush:
        out = {}
        plain = flush["runs"].get("plain", [])
        for variant, runs in flush["runs"].items():
            per_size: dict[str, Any] = {}
            for size in flush["sizes"]:
                key = str(size)
                for op in ("create", "update"):
                    value = median(r[key][op]["median"] for r in runs)
                    base = median(r[key][op]["median"] for r in plain)
                    added = None
                    if value is not None and base is not None:
                        added = (value - base) / size * 1e6
                    per_size.setdefault(key, {})[op] = {
                        "ms": None if value is None else value * 1000,
                        "added_us_per_object": added,
                    }
            out[variant] = per_size
        summary["flush"] = out
    bulk = results.get("bulk")
    if bulk:
        out = {}
        plain = bulk["runs"].get("plain", [])
        for variant, runs in bulk["runs"].items():
            out[variant] = {
                phase: {
                    "ms": (median(r[phase]["total"] for r in runs) or 0) * 1000,
                    "ratio": ratio(
                        median(r[phase]["total"] for r in runs),
                        median(r[phase]["total"] for r in plain),
                    ),
                    "rows": runs[0][phase]["rows"] if runs else None,
                    "entries": runs[0][phase]["entries"] if runs else None,
                }
                for phase in ("update", "delete")
            }
        summary["bulk"] = out
    memory = results.get("memory")
    if memory:
        summary["memory"] = {
            variant: {
                "peak_mb": (median(r["peak_kb"] for r in runs) or 0) / 1024,
                "flush_mb": (median(r["peak_kb"] - r["objects_kb"] for r in runs) or 0) / 1024,
                "commit_s": median(r["commit"] for r in runs),
            }
            for variant, runs in memory["runs"].items()
        }
    reads = results.get("reads")
    if reads and "queries" in reads:
        summary["reads"] = {
            "rows": reads["rows"],
            "tenant_rows": reads["tenant_rows"],
            "queries": reads["queries"],
        }
    return summary
