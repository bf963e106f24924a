"""Retention throughput, and what it costs the application's writers while it runs.

Seeds ``--rows`` entries (the reads task's generator: one every 30 s from 2024-06-01, 500
tenants, real-looking states), marks them all sealed (fake members: this measures the prune's
bookkeeping, not verify), then, ``--runs`` times: a writer commits one audited object per
transaction, in a process of its own, for ``--idle`` seconds (its idle latencies), then keeps committing while
``auditlog.prune`` removes the oldest ``--prune`` entries in batches of ``--batch-size``. Prints
the prune's entries per second and the writer's p50/p99 latency idle and during the prune (the
ratio of the two p99s is the figure the retention target is about). PostgreSQL uses the schema
``bench_lifecycle`` of the benchmark database::

    python -m benchmarks.lifecycle                       # 1.5M entries, prune 1M, 3 runs
    python -m benchmarks.lifecycle --rows 300000 --prune 200000 --runs 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import statistics
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import auditlog
from auditlog.integrity import seal_entry_table
from auditlog.lifecycle import prune_entry_table, prune_table

from .backends import make_engine, url_for
from .reads import seed

SCHEMA = "bench_lifecycle"
_START = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
_STEP = dt.timedelta(seconds=30)  # the seed's spacing


class _Base(DeclarativeBase):
    pass


class Note(_Base):
    """The writer's model: one row per transaction."""

    __tablename__ = "bench_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(sa.String(100))


def _engine() -> sa.Engine:
    admin = sa.create_engine(url_for("postgresql"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    admin.dispose()
    return make_engine("postgresql", schema=SCHEMA)


def _prepare(engine: sa.Engine, rows: int) -> None:
    print(f"  seeded {rows:,} entries in {seed(engine, rows):.1f}s")
    with engine.begin() as conn:
        conn.execute(prune_entry_table.delete())
        conn.execute(prune_table.delete())
        conn.execute(seal_entry_table.delete())
        conn.exec_driver_sql(
            "INSERT INTO audit_seal_entry (entry_id, seal_seq, entry_key, digest) "
            "SELECT id, 1, NULL, md5(id::text) || md5(id::text || 'x') FROM audit_log"
        )
        _Base.metadata.drop_all(conn)
        _Base.metadata.create_all(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE audit_seal_entry")


def _write(stop: Any, samples: Any) -> None:
    """The application: in a process of its own, one audited Note per transaction, back to back,
    each latency recorded as (start, seconds) on the system-wide monotonic clock."""
    engine = _engine()
    auditlog.register(Note)
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    taken: list[tuple[float, float]] = []
    next_id = 1
    while not stop.is_set():
        start = time.monotonic()
        with auditlog.audit_context(tenant_id="writer", user_id="w"), maker.begin() as session:
            session.add(Note(id=next_id, body=f"note {next_id}"))
        taken.append((start, time.monotonic() - start))
        next_id += 1
    samples.send(taken)
    engine.dispose()


class _Writer:
    """The writer process, and its latencies once stopped."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_write, args=(self.stop, send), daemon=True)
        self.process.start()
        self.samples: list[tuple[float, float]] = []

    def finish(self) -> None:
        self.stop.set()
        self.samples = self.receive.recv()
        self.process.join()

    def between(self, start: float, end: float) -> list[float]:
        return [seconds for at, seconds in self.samples if start <= at < end]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(
    rows: int, to_prune: int, batch_size: int, runs: int, idle: float, pause: float
) -> dict[str, Any]:
    engine = _engine()
    results: list[dict[str, float]] = []
    try:
        for i in range(runs):
            _prepare(engine, rows)
            writer = _Writer()
            time.sleep(3.0)  # the process starts and warms up
            idle_start = time.monotonic()
            time.sleep(idle)
            prune_start = time.monotonic()
            result = auditlog.prune(
                engine, before=_START + to_prune * _STEP, batch_size=batch_size, pause=pause
            )
            prune_end = time.monotonic()
            time.sleep(0.5)
            writer.finish()
            assert result.deleted == to_prune - 1, result  # the seed starts at g = 1
            idle_latencies = writer.between(idle_start, prune_start)
            during = writer.between(prune_start, prune_end)
            sample = {
                "entries_per_second": result.deleted / result.seconds,
                "seconds": result.seconds,
                "idle_p50_ms": 1000 * _percentile(idle_latencies, 0.5),
                "idle_p99_ms": 1000 * _percentile(idle_latencies, 0.99),
                "during_p50_ms": 1000 * _percentile(during, 0.5),
                "during_p99_ms": 1000 * _percentile(during, 0.99),
                "writer_commits_during": len(during),
            }
            sample["during_p90_ms"] = 1000 * _percentile(during, 0.9)
            sample["p99_ratio"] = sample["during_p99_ms"] / sample["idle_p99_ms"]
            results.append(sample)
            print(
                f"  run {i + 1}/{runs}: pruned {result.deleted:,} in {result.seconds:.2f}s "
                f"({sample['entries_per_second']:,.0f}/s, {result.batches} batches); writer p99 "
                f"{sample['idle_p99_ms']:.2f} ms idle, {sample['during_p99_ms']:.2f} ms during "
                f"({sample['p99_ratio']:.2f}x), {len(during)} commits during"
            )
    finally:
        engine.dispose()
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="entries seeded (1,500,000)")
    parser.add_argument("--prune", type=int, default=1_000_000, help="entries pruned (1,000,000)")
    parser.add_argument("--batch-size", type=int, default=2_000, help="prune batch (2,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are printed (3)")
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between batches (0.01)")
    parser.add_argument("--idle", type=float, default=8.0, help="idle writer seconds (8)")
    args = parser.parse_args()
    medians = run(args.rows, args.prune, args.batch_size, args.runs, args.idle, args.pause)
    print(json.dumps({"postgresql": medians}, indent=2))


if __name__ == "__main__":
    main()
