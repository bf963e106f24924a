"""Statistics across runs and the printed tables (the JSON file holds every sample)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["PHASES", "REQUEST_PHASES", "Table", "median", "ratio", "summarise"]

PHASES = ("insert", "update", "delete")
REQUEST_PHASES = ("create", "update", "delete")


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


def _paired(
    runs: list[Any], plain: list[Any], get: Any
) -> tuple[float | None, float | None, list[float]]:
    """Median of a variant, median of plain, and the per-run ratios variant/plain.

    Run *i* of every variant ran next to run *i* of plain (the order alternates), so each ratio
    compares neighbours in time; the median of those ratios is the figure reported, which resists
    the drift of a shared machine better than a ratio of medians taken at different times.
    """
    ratios = [get(v) / get(p) for v, p in zip(runs, plain, strict=False) if get(p)]
    return median(get(r) for r in runs), median(get(r) for r in plain), ratios


def _request_summary(request: dict[str, Any]) -> dict[str, Any]:
    """Per-transaction medians, paired ratios and added microseconds of the request task."""
    plain = request["runs"]["plain"]
    out: dict[str, Any] = {}
    for variant, runs in request["runs"].items():
        per_phase = {}
        for phase in REQUEST_PHASES:

            def get(r: Any, phase: str = phase) -> float:
                return float(r[phase]["total"]) / r["count"]

            value, _, ratios = _paired(runs, plain, get)
            added = [(get(v) - get(p)) * 1e6 for v, p in zip(runs, plain, strict=False)]
            per_phase[phase] = {
                "ms": None if value is None else value * 1000,
                "ratio": median(ratios),
                "ratio_min": min(ratios, default=None),
                "ratio_max": max(ratios, default=None),
                "added_us": median(added),
                "runs": len(runs),
            }
        out[variant] = per_phase
    return out


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians and paired ratios from the per-run samples of one backend (the small summary)."""
    summary: dict[str, Any] = {}
    write = results.get("write")
    if write and "plain" in write["runs"]:
        plain = write["runs"]["plain"]
        out: dict[str, Any] = {}
        for variant, runs in write["runs"].items():
            per_phase = {}
            for phase in PHASES:
                value, _, ratios = _paired(runs, plain, lambda r, ph=phase: r[ph]["total"])
                commit, _, commit_ratios = _paired(runs, plain, lambda r, ph=phase: r[ph]["commit"])
                per_phase[phase] = {
                    "ms": None if value is None else value * 1000,
                    "ratio": median(ratios),
                    "ratio_min": min(ratios, default=None),
                    "ratio_max": max(ratios, default=None),
                    "commit_ms": None if commit is None else commit * 1000,
                    "commit_ratio": median(commit_ratios),
                    "runs": len(runs),
                }
            out[variant] = per_phase
        summary["write"] = out
    request = results.get("request")
    if request and "plain" in request["runs"]:
        summary["request"] = _request_summary(request)
    flush = results.get("flush")
    if flush and "plain" in flush["runs"]:
        out = {}
        plain = flush["runs"]["plain"]
        for variant, runs in flush["runs"].items():
            per_size: dict[str, Any] = {}
            for size in flush["sizes"]:
                key = str(size)
                for op in ("create", "update"):

                    def get(r: Any, key: str = key, op: str = op) -> float:
                        return float(r[key][op]["median"])

                    value, _, _ = _paired(runs, plain, get)
                    added = [
                        (get(v) - get(p)) / size * 1e6 for v, p in zip(runs, plain, strict=False)
                    ]
                    per_size.setdefault(key, {})[op] = {
                        "ms": None if value is None else value * 1000,
                        "added_us_per_object": median(added),
                        "runs": len(runs),
                    }
            out[variant] = per_size
        summary["flush"] = out
    bulk = results.get("bulk")
    if bulk and "plain" in bulk["runs"]:
        out = {}
        plain = bulk["runs"]["plain"]
        for variant, runs in bulk["runs"].items():
            per_phase = {}
            for phase in ("update", "delete"):
                value, _, ratios = _paired(runs, plain, lambda r, ph=phase: r[ph]["total"])
                per_phase[phase] = {
                    "ms": None if value is None else value * 1000,
                    "ratio": median(ratios),
                    "rows": runs[0][phase]["rows"],
                    "entries": runs[0][phase]["entries"],
                }
            out[variant] = per_phase
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
