"""Where an audited flush spends its time: pyinstrument's call tree and cProfile's function shares.

Only ``session.commit()`` of 100-object flushes runs under the profiler (create, then update of
two columns), as in the flush benchmark. cProfile runs in a separate process from pyinstrument,
so neither measures the other.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import os
import pstats
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .variants import Setup, item_values

__all__ = ["profile"]

_NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


class _Pyinstrument:
    def __init__(self) -> None:
        from pyinstrument import Profiler

        self.profiler = Profiler(interval=0.0005)

    def start(self) -> None:
        self.profiler.start()

    def stop(self) -> None:
        self.profiler.stop()


class _CProfile:
    def __init__(self) -> None:
        self.profiler = cProfile.Profile()

    def start(self) -> None:
        self.profiler.enable()

    def stop(self) -> None:
        self.profiler.disable()


def _short(filename: str) -> str:
    """``package/module.py`` from a full path (the library may run from a checkout's src/)."""
    if "/auditlog/" in filename:
        return "auditlog/" + filename.rsplit("/auditlog/", 1)[1]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    return os.path.basename(filename)


def _cprofile_summary(profiler: cProfile.Profile, total: float, top: int) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls": ncalls,
                "tottime": tottime,
                "cumtime": cumtime,
                "own_share": tottime / total if total else 0.0,
                "cum_share": cumtime / total if total else 0.0,
            }
        )
    ours = [r for r in rows if r["function"].startswith("auditlog/")]
    return {
        "by_own_time": sorted(rows, key=lambda r: -r["tottime"])[:top],
        "auditlog_by_cumulative": sorted(ours, key=lambda r: -r["cumtime"])[:top],
    }


def profile(
    setup: Setup, *, tool: str, size: int, flushes: int, output: str, top: int = 25
) -> dict[str, Any]:
    """Profile ``flushes`` commits of ``size`` new objects, then as many updates of ``size`` objects."""
    model, sessions = setup.model, setup.sessions
    profiler: _Pyinstrument | _CProfile = _Pyinstrument() if tool == "pyinstrument" else _CProfile()
    timings = {"create": 0.0, "update": 0.0}
    counter = 0
    with setup.context():
        # warm up: statement caches, content type, first connections
        for _ in range(5):
            with sessions() as session:
                session.add_all([model(**item_values(counter + k)) for k in range(size)])
                counter += size
                session.commit()
        for _ in range(flushes):
            with sessions() as session:
                session.add_all([model(**item_values(counter + k)) for k in range(size)])
                counter += size
                profiler.start()
                t = time.perf_counter()
                session.commit()
                timings["create"] += time.perf_counter() - t
                profiler.stop()
        last = 0
        for _ in range(flushes):
            with sessions() as session:
                items = session.scalars(
                    sa.select(model).where(model.id > last).order_by(model.id).limit(size)
                ).all()
                for item in items:
                    item.quantity = item.quantity + 1
                    item.updated_at = _NOW
                last = items[-1].id
                profiler.start()
                t = time.perf_counter()
                session.commit()
                timings["update"] += time.perf_counter() - t
                profiler.stop()
    total = timings["create"] + timings["update"]
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"tool": tool, "size": size, "flushes": flushes, "seconds": timings}
    if isinstance(profiler, _Pyinstrument):
        text = profiler.profiler.output_text(unicode=True, color=False, show_all=False)
        path.write_text(text)
    else:
        profiler.profiler.dump_stats(str(path))
        result.update(_cprofile_summary(profiler.profiler, total, top))
    result["output"] = str(path)
    return result
