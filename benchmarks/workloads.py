"""The timed workloads, run inside one worker process for one variant.

Each returns a JSON-ready dict of seconds (or kilobytes for memory); statistics across runs are
the parent's job (``__main__.py``).
"""

from __future__ import annotations

import datetime as dt
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .variants import Setup, item_values

__all__ = ["bulk", "flushes", "memory", "request", "write"]

_NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def write(setup: Setup, *, rows: int, batch: int) -> dict[str, Any]:
    """Insert ``rows`` rows, update two columns of each, delete them: ``batch`` rows per commit.

    Updates and deletes load their batch in the same session first (keyset on the primary key),
    as an application would; ``total`` is the whole phase, ``commit`` the flushes and commits alone.
    """
    model, sessions = setup.model, setup.sessions
    out: dict[str, Any] = {}
    with setup.context():
        # insert
        commit = 0.0
        start = time.perf_counter()
        for first in range(0, rows, batch):
            with sessions() as session:
                session.add_all(
                    [model(**item_values(i)) for i in range(first, min(first + batch, rows))]
                )
                t = time.perf_counter()
                session.commit()
                commit += time.perf_counter() - t
        out["insert"] = {"total": time.perf_counter() - start, "commit": commit}

        # update two columns
        commit, last = 0.0, 0
        start = time.perf_counter()
        while True:
            with sessions() as session:
                items = session.scalars(
                    sa.select(model).where(model.id > last).order_by(model.id).limit(batch)
                ).all()
                if not items:
                    break
                for item in items:
                    item.price = item.price + Decimal("1.25")
                    item.updated_at = _NOW
                last = items[-1].id
                t = time.perf_counter()
                session.commit()
                commit += time.perf_counter() - t
        out["update"] = {"total": time.perf_counter() - start, "commit": commit}

        # delete
        commit = 0.0
        start = time.perf_counter()
        while True:
            with sessions() as session:
                items = session.scalars(sa.select(model).order_by(model.id).limit(batch)).all()
                if not items:
                    break
                for item in items:
                    session.delete(item)
                t = time.perf_counter()
                session.commit()
                commit += time.perf_counter() - t
        out["delete"] = {"total": time.perf_counter() - start, "commit": commit}
    out["entries"] = setup.count_entries()
    return out


def _transactions(setup: Setup, keys: Iterable[Any], body: Callable[[Session, Any], None]) -> float:
    """Seconds of one transaction per key: context, new session, ``body``, commit, close."""
    context, sessions = setup.context, setup.sessions
    start = time.perf_counter()
    for key in keys:
        with context(), sessions() as session:
            body(session, key)
            session.commit()
    return time.perf_counter() - start


def request(setup: Setup, *, count: int) -> dict[str, Any]:
    """One-object transactions as web requests make them: ``count`` creates, updates, deletes.

    Each transaction enters the variant's context (the request's actor), opens a session, does its
    work, commits and closes the session; the engine and its pool live as long as the process.
    Create adds one new object; update loads one of them with ``session.get`` and changes two
    columns; delete loads one and deletes it. ``total`` is each phase's seconds.
    """
    model = setup.model
    created: list[Any] = []

    def create(session: Session, i: int) -> None:
        item = model(**item_values(i))
        session.add(item)
        created.append(item)

    def update(session: Session, key: Any) -> None:
        item = session.get(model, key)
        item.price = item.price + Decimal("1.25")
        item.updated_at = _NOW

    def delete(session: Session, key: Any) -> None:
        session.delete(session.get(model, key))

    out: dict[str, Any] = {"count": count}
    out["create"] = {"total": _transactions(setup, range(count), create)}
    keys = [sa.inspect(item).identity[0] for item in created]  # no load: the key survives expiry
    out["update"] = {"total": _transactions(setup, keys, update)}
    out["delete"] = {"total": _transactions(setup, keys, delete)}
    out["entries"] = setup.count_entries()
    return out


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "n": len(ordered),
    }


def flushes(setup: Setup, *, sizes: tuple[int, ...], repeat: dict[int, int]) -> dict[str, Any]:
    """Commits of 1, 10, 100... new objects, then of as many loaded objects changed in two columns.

    Each commit runs in its own session (one request); only ``commit()`` is timed, which flushes.
    The first tenth of each series warms up caches (statement cache, content type) and is dropped.
    """
    model, sessions = setup.model, setup.sessions
    out: dict[str, Any] = {}
    counter = 0
    with setup.context():
        for size in sizes:
            n = repeat[size]
            warm = max(1, n // 10)
            created: list[float] = []
            first_id = None
            for _ in range(n + warm):
                with sessions() as session:
                    objs = [model(**item_values(counter + k)) for k in range(size)]
                    counter += size
                    session.add_all(objs)
                    t = time.perf_counter()
                    session.commit()
                    created.append(time.perf_counter() - t)
                    if first_id is None:
                        first_id = session.scalar(sa.select(sa.func.min(model.id)))
            updated: list[float] = []
            last = (first_id or 1) - 1
            for _ in range(n + warm):
                with sessions() as session:
                    items = session.scalars(
                        sa.select(model).where(model.id > last).order_by(model.id).limit(size)
                    ).all()
                    for item in items:
                        item.quantity = item.quantity + 1
                        item.updated_at = _NOW
                    last = items[-1].id
                    t = time.perf_counter()
                    session.commit()
                    updated.append(time.perf_counter() - t)
            out[str(size)] = {
                "create": _summary(created[warm:]),
                "update": _summary(updated[warm:]),
            }
    return out


def bulk(setup: Setup, *, rows: int) -> dict[str, Any]:
    """ORM-enabled ``update()`` and ``delete()`` statements over ``rows`` rows, and what they recorded.

    The rows are seeded with a Core INSERT on a bare connection, outside any session.
    """
    model, sessions = setup.model, setup.sessions
    table = model.__table__
    with setup.engine.begin() as conn:
        for first in range(0, rows, 5000):
            conn.execute(
                table.insert(), [item_values(i) for i in range(first, min(first + 5000, rows))]
            )
    out: dict[str, Any] = {}
    with setup.context():
        for phase in ("update", "delete"):
            before = setup.count_entries()
            with sessions() as session:
                start = time.perf_counter()
                if phase == "update":
                    stmt: Any = (
                        sa.update(model)
                        .where(model.id > 0)
                        .values(quantity=model.quantity + 1, updated_at=_NOW)
                    )
                else:
                    stmt = sa.delete(model).where(model.id > 0)
                affected = session.execute(stmt).rowcount
                session.commit()
                elapsed = time.perf_counter() - start
            out[phase] = {
                "total": elapsed,
                "rows": affected,
                "entries": setup.count_entries() - before,
            }
    return out


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def memory(setup: Setup, *, objects: int) -> dict[str, Any]:
    """Peak RSS of one flush of ``objects`` new objects (the process is fresh: the peak is ours)."""
    model, sessions = setup.model, setup.sessions
    baseline = _rss_kb()
    with setup.context(), sessions() as session:
        session.add_all([model(**item_values(i)) for i in range(objects)])
        built = _rss_kb()
        start = time.perf_counter()
        session.commit()
        elapsed = time.perf_counter() - start
    return {
        "baseline_kb": baseline,
        "objects_kb": built,
        "peak_kb": _rss_kb(),
        "commit": elapsed,
        "entries": setup.count_entries(),
    }
