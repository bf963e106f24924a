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
- **One request, one object**: the same three side by side in one process, as
  ``benchmarks.interleaved`` runs them (blocks of ``--block`` transactions per phase, ``--rounds``
  rounds in alternating order, each block's ratio to the round's plain block).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .interleaved import TRIGGERS, Variant, database, requests, show, switch, variants_on
from .variants import TABLE

MODES = ("plain", "trigger", "in-database")
_SET_INSERT = (
    f"INSERT INTO {TABLE} (sku, name, price, quantity, active, attributes, created_at) "
    "SELECT 'SKU-' || g, 'Benchmark item number ' || g, g / 100.0, mod(g, 500), mod(g, 3) <> 0, "
    """'{"color": "red", "size": 3, "tags": ["bench", "t1"]}', now() """
    "FROM generate_series(1, %(rows)s) AS g"
)


def _timed(conn: Connection, sql: str, parameters: dict[str, Any] | None = None) -> float:
    start = time.perf_counter()
    conn.exec_driver_sql(sql, parameters)
    return time.perf_counter() - start


def server(
    engine: Engine, variants: list[Variant], rows: int, modes: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Microseconds per row of set-based statements, median of three rounds per mode."""
    samples: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    for round_ in range(3):
        for mode in modes if round_ % 2 == 0 else tuple(reversed(modes)):
            switch(engine, variants, TRIGGERS.get(mode))
            with engine.begin() as conn:
                phases = {
                    "insert": _timed(conn, _SET_INSERT, {"rows": rows}),
                    "update": _timed(conn, f"UPDATE {TABLE} SET price = price + 1"),
                    "delete": _timed(conn, f"DELETE FROM {TABLE}"),
                }
            for phase, seconds in phases.items():
                samples[mode].setdefault(phase, []).append(seconds / rows * 1e6)
    return {m: {p: statistics.median(v) for p, v in s.items()} for m, s in samples.items()}


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
    with database("postgresql") as engine:
        variants = variants_on(engine, MODES)
        per_row = server(engine, variants, args.rows, MODES)
        shown = {"plain": {k: f"{v:.1f}" for k, v in per_row["plain"].items()}}
        shown |= {m: _added(per_row[m], per_row["plain"]) for m in MODES[1:]}
        before = _entries(engine)[0]
        result = requests(engine, variants, block=args.block, rounds=args.rounds)
        entries, with_actor = _entries(engine, since=before)
        _strip_audit_log(engine)
        bare = server(engine, variants, args.rows, ("plain", "in-database"))
        shown["in-database, no indexes"] = _added(bare["in-database"], bare["plain"])
    _table(f"On the server: µs per row ({args.rows:,} rows per statement)", shown)
    show(f"One request, one object: ratio to plain ({args.rounds} blocks of {args.block})", result)
    print(f"\nin-database entries of the requests: {entries:,}, {with_actor:,} with their actor")


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        main()
