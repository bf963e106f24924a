"""One-object transactions of several variants, interleaved in one process.

Run from the repository root::

    python -m benchmarks.interleaved [--backend postgresql] [--variants plain,auditlog,naive]
                                     [--block 200] [--rounds 10]

Every variant of ``variants.py`` is set up on one database, on the same ``bench_item`` table:
each has its own mapped class and sessionmaker (auditlog enabled on its own, the naive listener
on its own), and the PostgreSQL triggers are switched on for their variant's blocks only
(``ALTER TABLE ... ENABLE TRIGGER``). Each round runs one block of ``--block`` transactions per
phase for every variant, in alternating order: creates, updates of two columns and deletes, as
``workloads.request`` makes them, each transaction in the variant's context (its request's
actor). A variant's ratio is the median over the rounds of its block's time to the plain block
of the same round. A short block of each variant runs first, unmeasured.

``auditlog-bare``, only when named, is auditlog (the same mapped class and sessionmaker) with the
secondary indexes of ``audit_log`` dropped for its blocks and created again after them: what
those indexes cost a request.

Fresh processes (``python -m benchmarks --only request``) drift by as much as the differences
between variants; blocks side by side in one process drift much less. What the variants share
here: the engine and its pool, and the engine-level listeners each one attaches (auditlog's
row counts of DELETE statements, the in-database variant's comment), which return at once in
the other variants' blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import backends
from .variants import _TRIGGER_DDL, POSTGRESQL_ONLY, TABLE, Setup, item_values, set_up

__all__ = ["PHASES", "Variant", "requests", "switch", "variants_on"]

PHASES = ("create", "update", "delete")
DEFAULT = ("plain", "auditlog", "naive", "trigger", "in-database")
#: auditlog with ``audit_log``'s secondary indexes dropped for its blocks: what they cost a
#: request (reads by any filter but the key then scan the table); runs only when named
BARE = "auditlog-bare"
#: the trigger each trigger variant switches on
TRIGGERS = {"trigger": f"{TABLE}_audit", "in-database": f"{TABLE}_in_database"}
_NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


@dataclass
class Variant:
    """A variant ready to run side by side with the others."""

    name: str
    setup: Setup
    trigger: str | None = None
    indexes: bool = True


def variants_on(engine: Engine, names: tuple[str, ...]) -> list[Variant]:
    """Set up ``names`` (plain first) on one database whose tables are empty."""
    out: list[Variant] = []
    for name in ("plain", *(n for n in names if n != "plain")):
        if name == BARE:
            shared = next((v.setup for v in out if v.name == "auditlog"), None)
            out.append(Variant(name, shared or set_up("auditlog", engine), indexes=False))
            continue
        if name == "auditlog" and any(v.name == BARE for v in out):
            setup = next(v.setup for v in out if v.name == BARE)
        elif name == "trigger":
            setup = set_up("plain", engine)
            with engine.begin() as conn:
                for statement in _TRIGGER_DDL:
                    conn.exec_driver_sql(statement)
        else:
            setup = set_up(name, engine)
        out.append(Variant(name, setup, TRIGGERS.get(name)))
    return out


def switch(engine: Engine, variants: list[Variant], on: Variant | None) -> None:
    """Disable every variant's trigger, then enable ``on``'s; give ``audit_log`` the secondary
    indexes ``on`` runs with (all of them when ``on`` is None)."""
    _secondary_indexes(engine, on is None or on.indexes)
    names = [v.trigger for v in variants if v.trigger is not None]
    if not names:
        return
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER {name}")
        if on is not None and on.trigger is not None:
            conn.exec_driver_sql(f"ALTER TABLE {TABLE} ENABLE TRIGGER {on.trigger}")


def _secondary_indexes(engine: Engine, present: bool) -> None:
    """Create (``present``) or drop the indexes of ``audit_log`` other than its primary key."""
    if not sa.inspect(engine).has_table("audit_log"):
        return
    import auditlog

    with engine.begin() as conn:
        for index in sorted(auditlog.AuditLog.__table__.indexes, key=lambda i: str(i.name)):
            if present:
                index.create(conn, checkfirst=True)
            else:
                index.drop(conn, checkfirst=True)


def _block(setup: Setup, size: int, start: int) -> dict[str, float]:
    """Seconds per transaction of ``size`` creates, then updates, then deletes of those rows."""
    model, sessions, context = setup.model, setup.sessions, setup.context
    keys: list[Any] = []
    out = {}
    begin = time.perf_counter()
    for i in range(start, start + size):
        with context(), sessions() as session:
            item = model(**item_values(i))
            session.add(item)
            session.commit()
            keys.append(sa.inspect(item).identity[0])
    out["create"] = time.perf_counter() - begin
    begin = time.perf_counter()
    for key in keys:
        with context(), sessions() as session:
            item = session.get(model, key)
            item.price = item.price + Decimal("1.25")
            item.updated_at = _NOW
            session.commit()
    out["update"] = time.perf_counter() - begin
    begin = time.perf_counter()
    for key in keys:
        with context(), sessions() as session:
            session.delete(session.get(model, key))
            session.commit()
    out["delete"] = time.perf_counter() - begin
    return {phase: seconds / size for phase, seconds in out.items()}


def requests(
    engine: Engine, variants: list[Variant], *, block: int, rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant and phase: the median µs of its blocks, and the median ratio of each of
    its blocks to the plain block of the same round."""
    times: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    start = 0
    for variant in variants:  # warm-up, not measured: first statements, plans, pool
        switch(engine, variants, variant)
        _block(variant.setup, min(block, 20), start)
        start += block
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else list(reversed(variants)):
            switch(engine, variants, variant)
            times[variant.name].append(_block(variant.setup, block, start))
            start += block
    switch(engine, variants, None)
    plain = times["plain"]
    return {
        name: {
            phase: {
                "us": statistics.median(t[phase] for t in runs) * 1e6,
                "ratio": statistics.median(
                    t[phase] / p[phase] for t, p in zip(runs, plain, strict=True)
                ),
            }
            for phase in PHASES
        }
        for name, runs in times.items()
    }


def show(title: str, result: dict[str, dict[str, dict[str, float]]]) -> None:
    """Print ``result`` as a table: ratio to plain (µs) per variant and phase."""
    print(f"\n{title}")
    print(f"{'':<14}" + "".join(f"{p:>18}" for p in PHASES))
    for name, phases in result.items():
        cells = (f"{v['ratio']:.2f} ({v['us']:,.0f} µs)" for v in phases.values())
        print(f"{name:<14}" + "".join(f"{c:>18}" for c in cells))


@contextlib.contextmanager
def database(backend: str, journal: str | None = None) -> Any:
    """An engine on an empty database of ``backend`` (a new file for SQLite, in the journal
    mode ``journal`` when given)."""
    with tempfile.TemporaryDirectory(prefix="auditlog-bench-") as tmpdir:
        path = str(Path(tmpdir) / "interleaved.sqlite3") if backend == "sqlite" else None
        backends.reset(backend)
        engine = backends.make_engine(backend, schema=backends.WRITE_SCHEMA, sqlite_path=path)
        if journal is not None:

            @sa.event.listens_for(engine, "connect")
            def _journal(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute(f"PRAGMA journal_mode={journal}")

        try:
            yield engine
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interleaved", description=__doc__)
    parser.add_argument("--backend", default="postgresql", choices=backends.BACKENDS)
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT),
        help="comma-separated (plain always runs; trigger and in-database on PostgreSQL only)",
    )
    parser.add_argument("--block", type=int, default=200, help="transactions per phase and block")
    parser.add_argument("--rounds", type=int, default=10, help="blocks of each variant")
    parser.add_argument(
        "--sqlite-journal",
        choices=("delete", "wal"),
        help="SQLite's journal mode (default: SQLite's own, delete)",
    )
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.variants.split(",") if n.strip())
    known = (*DEFAULT, BARE)
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    if args.backend != "postgresql":
        names = tuple(n for n in names if n not in POSTGRESQL_ONLY)
    if args.sqlite_journal and args.backend != "sqlite":
        parser.error("--sqlite-journal: SQLite only")
    with database(args.backend, args.sqlite_journal) as engine:
        variants = variants_on(engine, names)
        result = requests(engine, variants, block=args.block, rounds=args.rounds)
        recorded = _recorded(engine)
    show(
        f"{args.backend}: one request, one object, ratio to plain "
        f"({args.rounds} blocks of {args.block} per variant, interleaved)",
        result,
    )
    print("\nrows recorded: " + ", ".join(f"{t} {c:,}" for t, c in recorded.items()))


def _recorded(engine: Engine) -> dict[str, int]:
    """Rows in each audit table present (auditlog and in-database share ``audit_log``)."""
    inspector = sa.inspect(engine)
    out = {}
    with engine.connect() as conn:
        for table in ("audit_log", "naive_audit", "trigger_audit"):
            if inspector.has_table(table):
                out[table] = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    return out


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
