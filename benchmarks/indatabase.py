"""What capture inside the database costs on PostgreSQL, measured two ways in one process.

Run from the repository root::

    python -m benchmarks.indatabase [--rows 20000] [--block 200] [--rounds 10]

Three triggers on one ``bench_item`` table, one enabled at a time (``ALTER TABLE ... ENABLE
TRIGGER``): none (``plain``), the floor (``trigger``: ``to_jsonb`` of the row into a narrow table
without secondary indexes) and ``in-database`` (auditlog's own row into ``audit_log``, with the
request's context read from a comment in front of the statement: see ``variants.py``).

- **On the server**: one set-based ``INSERT ... SELECT`` of ``--rows`` rows, one ``UPDATE`` and one
  ``DELETE`` of all of them, per trigger, three times in alternating order; microseconds per row
  (median). With no round trip and no Python in it, this is the trigger's own work. The last
  measurement drops the secondary indexes and the foreign key of ``audit_log`` and runs
  ``in-database`` again, to show what the entry's indexes cost.
- **One request, one object**: blocks of ``--block`` one-object transactions per phase (create,
  update of two columns, delete), as ``workloads.request`` makes them, the trigger switched
  between blocks, ``--rounds`` rounds of one block of each in alternating order; the median
  over the rounds of each block's ratio to the round's ``plain`` block. Interleaving in one process takes out most of the
  drift between fresh processes, which is as large as the differences here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import backends
from .variants import _TRIGGER_DDL, TABLE, Setup, item_values, set_up

MODES = ("plain", "trigger", "in-database")
#: the trigger of each mode (plain has none)
_TRIGGERS = {"trigger": f"{TABLE}_audit", "in-database": f"{TABLE}_in_database"}
_NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
_SET_INSERT = (
    f"INSERT INTO {TABLE} (sku, name, price, quantity, active, attributes, created_at) "
    "SELECT 'SKU-' || g, 'Benchmark item number ' || g, g / 100.0, mod(g, 500), mod(g, 3) <> 0, "
    """'{"color": "red", "size": 3, "tags": ["bench", "t1"]}', now() """
    "FROM generate_series(1, %(rows)s) AS g"
)


def _switch(engine: Engine, mode: str) -> None:
    with engine.begin() as conn:
        for name in _TRIGGERS.values():
            conn.exec_driver_sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER {name}")
        if mode in _TRIGGERS:
            conn.exec_driver_sql(f"ALTER TABLE {TABLE} ENABLE TRIGGER {_TRIGGERS[mode]}")


def _timed(conn: Connection, sql: str, parameters: dict[str, Any] | None = None) -> float:
    start = time.perf_counter()
    conn.exec_driver_sql(sql, parameters)
    return time.perf_counter() - start


def server(engine: Engine, rows: int, modes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Microseconds per row of set-based statements, median of three rounds per mode."""
    samples: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    for round_ in range(3):
        for mode in modes if round_ % 2 == 0 else tuple(reversed(modes)):
            _switch(engine, mode)
            with engine.begin() as conn:
                phases = {
                    "insert": _timed(conn, _SET_INSERT, {"rows": rows}),
                    "update": _timed(conn, f"UPDATE {TABLE} SET price = price + 1"),
                    "delete": _timed(conn, f"DELETE FROM {TABLE}"),
                }
            for phase, seconds in phases.items():
                samples[mode].setdefault(phase, []).append(seconds / rows * 1e6)
    return {m: {p: statistics.median(v) for p, v in s.items()} for m, s in samples.items()}


def _blocks(setup: Setup, size: int, start: int) -> dict[str, float]:
    """Seconds per transaction of one block of creates, updates and deletes."""
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


def requests(setup: Setup, block: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Per mode and phase: plain's median µs, and the median ratio of each block to plain's."""
    with_context = setup.context

    def no_context() -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    times: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    start = 0
    for round_ in range(rounds):
        for mode in MODES if round_ % 2 == 0 else tuple(reversed(MODES)):
            _switch(setup.engine, mode)
            # only the in-database mode sends the context (plain pays nothing for it)
            setup.context = with_context if mode == "in-database" else no_context
            times[mode].append(_blocks(setup, block, start))
            start += block
    setup.context = with_context
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        out[mode] = {
            phase: {
                "us": statistics.median(t[phase] for t in times[mode]) * 1e6,
                "ratio": statistics.median(
                    t[phase] / p[phase] for t, p in zip(times[mode], times["plain"], strict=True)
                ),
            }
            for phase in ("create", "update", "delete")
        }
    return out


def _entries(engine: Engine, since: int = 0) -> tuple[int, int]:
    """Entries in ``audit_log`` after the first ``since`` (by id order), and how many of them
    carry an actor."""
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT count(*), count(user_id) FROM "
            "(SELECT user_id FROM audit_log ORDER BY id OFFSET %(since)s) AS later",
            {"since": since},
        ).one()
    return int(row[0]), int(row[1])


def _strip_audit_log(engine: Engine) -> None:
    """Drop the secondary indexes and foreign keys of ``audit_log``."""
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for index in inspector.get_indexes("audit_log"):
            conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
        for key in inspector.get_foreign_keys("audit_log"):
            conn.exec_driver_sql(f'ALTER TABLE audit_log DROP CONSTRAINT "{key["name"]}"')


def _added(mode: dict[str, float], plain: dict[str, float]) -> dict[str, str]:
    return {k: f"{mode[k]:.1f} (+{mode[k] - plain[k]:.1f})" for k in mode}


def _table(title: str, rows: dict[str, dict[str, str]]) -> None:
    print(f"\n{title}")
    columns = list(next(iter(rows.values())))
    print(f"{'':<24}" + "".join(f"{c:>16}" for c in columns))
    for name, values in rows.items():
        print(f"{name:<24}" + "".join(f"{values[c]:>16}" for c in columns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.indatabase", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the set-based statements")
    parser.add_argument("--block", type=int, default=200, help="transactions per phase and block")
    parser.add_argument("--rounds", type=int, default=10, help="blocks of each mode")
    args = parser.parse_args(argv)
    backends.reset("postgresql")
    engine = backends.make_engine("postgresql", schema=backends.WRITE_SCHEMA)
    try:
        setup = set_up("in-database", engine)
        with engine.begin() as conn:
            for statement in _TRIGGER_DDL:
                conn.exec_driver_sql(statement)
        per_row = server(engine, args.rows, MODES)
        shown = {"plain": {k: f"{v:.1f}" for k, v in per_row["plain"].items()}}
        shown |= {m: _added(per_row[m], per_row["plain"]) for m in MODES[1:]}
        before = _entries(engine)[0]
        result = requests(setup, args.block, args.rounds)
        entries, with_actor = _entries(engine, since=before)
        _strip_audit_log(engine)
        bare = server(engine, args.rows, ("plain", "in-database"))
        shown["in-database, no indexes"] = _added(bare["in-database"], bare["plain"])
        _table(f"On the server: µs per row ({args.rows:,} rows per statement)", shown)
        _table(
            f"One request, one object: ratio to plain ({args.rounds} blocks of {args.block})",
            {
                m: {p: f"{v['ratio']:.2f} ({v['us']:.0f} µs)" for p, v in phases.items()}
                for m, phases in result.items()
            },
        )
        print(
            f"\nin-database entries of the requests: {entries:,}, {with_actor:,} with their actor"
        )
    finally:
        engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
