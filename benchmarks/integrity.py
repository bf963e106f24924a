"""Sealing and verifying throughput: entries per second of ``auditlog.seal`` and ``auditlog.verify``.

Seeds a log of ``--rows`` entries (the reads task's generator: 500 tenants, real-looking states),
then, ``--runs`` times: drops every seal, seals the whole log (``seal``), verifies it
(``verify``) and verifies one tenant's entries (``verify --tenant-id``). Prints the medians in
entries per second. PostgreSQL uses the schema ``bench_integrity`` of the benchmark database;
SQLite a temporary file::

    python -m benchmarks.integrity                       # PostgreSQL, 200,000 entries
    python -m benchmarks.integrity --backend sqlite --rows 50000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import auditlog
from auditlog.integrity import seal_entry_table, seal_table

from .backends import make_engine, url_for
from .reads import BIG_TENANT, seed

SCHEMA = "bench_integrity"


def _engine(backend: str, folder: str) -> sa.Engine:
    if backend == "postgresql":
        admin = sa.create_engine(url_for(backend), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        admin.dispose()
        return make_engine(backend, schema=SCHEMA)
    if backend == "sqlite":
        return make_engine(backend, sqlite_path=str(Path(folder) / "integrity.sqlite3"))
    raise SystemExit(f"--backend: {backend!r}: integrity runs on postgresql or sqlite")


def run(backend: str, rows: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        engine = _engine(backend, folder)
        try:
            seconds = seed(engine, rows)
            print(f"  seeded {rows:,} entries in {seconds:.1f}s")
            samples: dict[str, list[float]] = {"seal": [], "verify": [], "verify tenant": []}
            for i in range(runs):
                with engine.begin() as conn:
                    conn.execute(seal_entry_table.delete())
                    conn.execute(seal_table.delete())
                if backend == "postgresql":
                    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                        c.exec_driver_sql("VACUUM ANALYZE audit_seal_entry")
                start = time.perf_counter()
                sealed = auditlog.seal(engine)
                samples["seal"].append(time.perf_counter() - start)
                assert sealed.entries == rows, sealed
                start = time.perf_counter()
                report = auditlog.verify(engine)
                samples["verify"].append(time.perf_counter() - start)
                assert report.intact and report.sealed == rows, report.problems[:3]
                start = time.perf_counter()
                mine = auditlog.verify(engine, tenant_id=BIG_TENANT)
                samples["verify tenant"].append(time.perf_counter() - start)
                assert mine.intact
                print(
                    f"  run {i + 1}/{runs}: "
                    + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in samples.items())
                )
        finally:
            engine.dispose()
    return {
        name: {"seconds": statistics.median(values), "per_second": rows / statistics.median(values)}
        for name, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.integrity", description=__doc__)
    parser.add_argument("--backend", default="postgresql", help="postgresql or sqlite")
    parser.add_argument("--rows", type=int, default=200_000, help="entries sealed and verified")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians are reported)")
    args = parser.parse_args()
    print(f"{args.backend}: seal and verify {args.rows:,} entries, {args.runs} runs")
    results = run(args.backend, args.rows, args.runs)
    print(f"{'task':<14} {'seconds':>8} {'entries/s':>10}")
    for name, value in results.items():
        print(f"{name:<14} {value['seconds']:>8.2f} {value['per_second']:>10,.0f}")


if __name__ == "__main__":
    main()
