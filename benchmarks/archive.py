"""Archive export throughput on PostgreSQL: entries per second to JSON Lines, CSV and Parquet.

Seeds ``--rows`` entries (``INSERT ... SELECT`` from ``generate_series``, one every 30 s, 500
tenants, states of eleven fields with a list and a null, a transaction id) into the database
``bench_archive``, seals them all with ``auditlog.seal`` (so that the archives carry seals and
members), then exports everything ``--runs`` times to each format and prints the median rate.
A seeded database is reused when it holds the same number of sealed entries. Then verifies one
archive of each format with ``verify_archive`` when ``--verify`` (its time is printed, not a
target)::

    python -m benchmarks.archive                      # 1M entries, 5 runs per format, no verify
    python -m benchmarks.archive --rows 200000 --runs 3 --formats jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import auditlog
from auditlog.lifecycle import export_archive, verify_archive

_STATE = """jsonb_build_object(
    'id', (h / 23) % 20000, 'quantity', h % 500 + {plus}, 'price', (h % 100000)::text,
    'name', 'Item ' || (h / 23) % 20000, 'sku', 'SKU-' || lpad(((h / 23) % 20000)::text, 6, '0'),
    'status', (ARRAY['draft', 'active', 'archived'])[1 + (h + {plus}) % 3], 'currency', 'EUR',
    'owner_id', (h / 7) % 50, 'tags', jsonb_build_array('tag' || h % 7, 'tag' || h % 11),
    'updated_at', to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'note', NULL)"""
#: Entries one every 30 s from 2024-06-01, 500 tenants, states of eleven fields (a list, a null).
_SEED = f"""
INSERT INTO audit_log (id, tenant_id, user_id, action_type, "timestamp", ip_address, user_agent,
                       object_id, content_type, before_state, after_state, changed_fields,
                       transaction_id)
SELECT encode(decode(lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0'), 'hex')
           || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 10), 'hex')::uuid,
       md5('tenant' || (h / 5) % 500)::uuid::text,
       'user-' || (h / 7) % 50,
       action,
       ts,
       '198.51.' || (h / 13) % 4 || '.' || (h / 17) % 50,
       'Mozilla/5.0 (X11; Linux x86_64) bench',
       ((h / 23) % 20000)::text,
       1 + (h / 29) % 20,
       CASE WHEN action <> 'create' THEN {_STATE.format(plus=0)} END,
       CASE WHEN action <> 'delete' THEN {_STATE.format(plus=1)} END,
       CASE WHEN action = 'update' THEN '["quantity", "status"]'::jsonb END,
       encode(decode(lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0'), 'hex')
           || substring(uuid_send(gen_random_uuid()) FROM 1 FOR 10), 'hex')::uuid
FROM (
    SELECT g, h, timestamptz '2024-06-01 00:00:00+00' + g * interval '30 seconds' AS ts,
           CASE WHEN (h / 11) % 10 < 6 THEN 'update'
                WHEN (h / 11) % 10 < 9 THEN 'create' ELSE 'delete' END AS action
    FROM (SELECT g, (g::bigint * 2654435761) % 2147483648 AS h
          FROM generate_series(1, :rows) AS g) AS numbered
) AS s
"""


def seed(engine: sa.Engine, rows: int) -> float:
    """Empty tables, then ``rows`` entries; returns the seconds it took."""
    from auditlog.models import content_type_table

    start = time.perf_counter()
    with engine.begin() as conn:
        auditlog.metadata.drop_all(conn)
    auditlog.create_tables(engine)
    with engine.begin() as conn:
        conn.execute(
            content_type_table.insert(),
            [{"name": f"app.models.Model{k}", "table_name": f"model_{k}"} for k in range(1, 21)],
        )
        conn.execute(sa.text(_SEED), {"rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE audit_log")
    return time.perf_counter() - start


URL = os.environ.get(
    "AUDITLOG_BENCH_ARCHIVE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench_archive"
)


def _prepare(engine: sa.Engine, rows: int) -> None:
    """Seed and seal ``rows`` entries, unless the database already holds them sealed."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if inspector.has_table("audit_log") and inspector.has_table("audit_seal_entry"):
            entries = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
            sealed = conn.execute(sa.text("SELECT count(*) FROM audit_seal_entry")).scalar_one()
            if entries == sealed == rows:
                print(f"  reusing {rows:,} sealed entries")
                return
    print(f"  seeded {rows:,} entries in {seed(engine, rows):.1f}s")
    start = time.perf_counter()
    result = auditlog.seal(engine)
    print(f"  sealed them in {result.seals} seals in {time.perf_counter() - start:.1f}s")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE audit_seal_entry")
        conn.exec_driver_sql("VACUUM ANALYZE audit_seal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--formats", default="jsonl,csv,parquet")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--verify", action="store_true", help="also time verify_archive")
    args = parser.parse_args()
    engine = sa.create_engine(URL)
    _prepare(engine, args.rows)
    with tempfile.TemporaryDirectory() as folder:
        for form in args.formats.split(","):
            target = Path(folder) / f"archive.{form}"
            rates = []
            for _ in range(args.runs):
                start = time.perf_counter()
                result = export_archive(engine, target, format=form, page_size=args.page_size)
                seconds = time.perf_counter() - start
                rates.append(result.entries / seconds)
                print(
                    f"  {form}: {result.entries:,} entries, {result.seals} seals in "
                    f"{seconds:.2f}s: {result.entries / seconds:,.0f} entries/s"
                )
            size = target.stat().st_size / 1e6
            print(
                f"{form}: median {statistics.median(rates):,.0f} entries/s "
                f"(min {min(rates):,.0f}, max {max(rates):,.0f}), {size:,.0f} MB"
            )
            if not args.verify:
                continue
            start = time.perf_counter()
            report = verify_archive(target)
            print(
                f"{form}: verify_archive {time.perf_counter() - start:.1f}s, "
                f"intact={report.intact}, {report.sealed:,} sealed in {report.seals} seals"
            )
    engine.dispose()


if __name__ == "__main__":
    main()
