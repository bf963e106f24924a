"""PNG charts of the ratios to plain: ``write-ratios.png`` and ``request-ratios.png``.

One figure per task, one row per backend: for each phase, a bar per variant giving the median of
its per-run ratios to plain (``report.summarise``), a dashed line at 1.0 (plain), the value
printed on each bar. Bars far above the others (Continuum's tens) would flatten the rest, so when
a ratio exceeds ``CUT`` the axis stops above the others and the cut bars are hatched, their value
still printed. matplotlib is imported only here, when charts are drawn; without it the charts
are skipped with a notice.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import PHASES, REQUEST_PHASES

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["render"]

DPI = 100
#: inches of one backend's row (1000 x 400 px at ``DPI``)
ROW_SIZE = (10.0, 4.0)
#: a ratio above this is cut when the others would be flattened by it
CUT = 5.0
COLORS = {
    "auditlog": "#0072B2",
    "stdlib-json": "#56B4E9",
    "naive": "#E69F00",
    "continuum": "#D55E00",
    "trigger": "#7F7F7F",
    "in-database": "#009E73",
    "audit-trail": "#CC79A7",
}
OTHER_COLOR = "#F0E442"
CHARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "write": ("write-ratios.png", PHASES),
    "request": ("request-ratios.png", REQUEST_PHASES),
}


def render(everything: dict[str, Any], directory: Path) -> list[Path]:
    """Draw the charts of a results file (``__main__`` writes it) into ``directory``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "charts skipped: matplotlib is not installed (pip install matplotlib)", file=sys.stderr
        )
        return []
    written = []
    for task, (name, phases) in CHARTS.items():
        panels = [
            (backend, data)
            for backend, data in everything["backends"].items()
            if data["summary"].get(task)
        ]
        if not panels:
            continue
        figure = Figure(figsize=(ROW_SIZE[0], ROW_SIZE[1] * len(panels)), layout="constrained")
        figure.suptitle(_title(task, panels[0][1]["results"][task]), fontsize=12)
        axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (backend, data) in zip(axes, panels, strict=True):
            _panel(ax, task, phases, backend, data)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        figure.savefig(path, dpi=DPI, facecolor="white")
        written.append(path)
    return written


def _title(task: str, results: dict[str, Any]) -> str:
    if task == "write":
        head = f"Write workload: {results['rows']} rows, {results['batch']} per commit"
    else:
        head = (
            f"Requests: {results['count']} one-object transactions per phase, each its own session"
        )
    return f"{head}\nratio to plain, median of the per-run ratios (lower is better)"


def _label(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _top(ratios: list[float]) -> float:
    """The top of the axis: above every bar, or above the uncut ones when some exceed ``CUT``."""
    if not ratios:
        return 2.0
    if max(ratios) <= CUT:
        return max(1.3, max(ratios) * 1.15)
    return max(2.0, max((r for r in ratios if r <= CUT), default=1.0) * 1.3)


def _tick(task: str, phase: str, plain: dict[str, Any]) -> str:
    ms = plain.get(phase, {}).get("ms")
    if ms is None:
        return phase
    unit = "ms per transaction" if task == "request" else "ms"
    return f"{phase}\nplain {_label(ms)} {unit}"


def _panel(
    ax: Axes, task: str, phases: tuple[str, ...], backend: str, data: dict[str, Any]
) -> None:
    summary = data["summary"][task]
    variants = [v for v in summary if v != "plain"]
    ratios = {v: [summary[v][phase]["ratio"] for phase in phases] for v in variants}
    top = _top([r for values in ratios.values() for r in values if r is not None])
    width = 0.8 / max(1, len(variants))
    cut = False
    for k, variant in enumerate(variants):
        drawn = [(i, r) for i, r in enumerate(ratios[variant]) if r is not None]
        for n, (i, ratio) in enumerate(drawn):
            x = i - 0.4 + width * (k + 0.5)
            cut |= _bar(ax, x, width, ratio, top, variant, label=n == 0)
    ax.axhline(1.0, color="#333333", linestyle="--", linewidth=1.2, label="plain = 1.0")
    ax.set_ylim(0, top)
    ax.set_xlim(-0.5, len(phases) - 0.5)
    ax.set_xticks(range(len(phases)), [_tick(task, p, summary.get("plain", {})) for p in phases])
    ax.set_ylabel("ratio to plain")
    ax.grid(axis="y", color="#DDDDDD", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    server = str(data["results"].get("server", "")).split(" (")[0]
    note = f"  (hatched bars cut at {_label(top)}, their value printed)" if cut else ""
    ax.set_title(f"{backend}: {server}{note}", loc="left", fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("plain"))
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=9,
    )


def _bar(
    ax: Axes, x: float, width: float, ratio: float, top: float, variant: str, *, label: bool
) -> bool:
    """One bar and its value; True when the bar is cut at the top of the axis."""
    cut = ratio > top
    ax.bar(
        x,
        min(ratio, top),
        width * 0.92,
        color=COLORS.get(variant, OTHER_COLOR),
        edgecolor="white" if cut else "none",
        hatch="//" if cut else None,
        label=variant if label else None,
    )
    if cut:
        ax.text(
            x, top * 0.97, _label(ratio), ha="center", va="top", fontsize=8, fontweight="bold",
            rotation=90, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )  # fmt: skip
    else:
        ax.text(x, ratio + top * 0.01, _label(ratio), ha="center", va="bottom", fontsize=8)
    return cut
