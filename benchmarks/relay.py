"""Benchmark of the relay: how fast ``auditlog relay`` drains a backlog into NATS JetStream.

Run from the repository root (PostgreSQL and NATS with JetStream on this machine)::

    python -m benchmarks.relay                        # 200,000 entries, 5 runs, PostgreSQL
    python -m benchmarks.relay --entries 50000 --runs 3 --batch 5000
    python -m benchmarks.relay --database-url mariadb+pymysql://root@127.0.0.1:3306/bench_relay

The database (default ``postgresql+psycopg://postgres@127.0.0.1:5432/bench_relay``, or
``AUDITLOG_BENCH_RELAY_URL``) is the benchmark's: its audit tables are dropped and seeded with
``--entries`` entries once (kept while the count matches). Each run relays the whole backlog
under a new relay name into a new stream (deleted afterwards), in this process, through the
same code as the command, and reports entries per second; the summary is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Engine

import auditlog
from auditlog.capture.ids import new_ulids
from auditlog.models import audit_log_table, content_type_table
from auditlog.relay import RelaySource, run_relay
from auditlog.relay.jetstream import JetStreamSink

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_relay"


def seed(engine: Engine, count: int) -> None:
    """``count`` entries of ten tenants, in 10,000-row inserts, unless they are there."""
    with engine.connect() as connection:
        if sa.inspect(connection).has_table("audit_log"):
            have = connection.execute(sa.select(sa.func.count()).select_from(audit_log_table))
            if have.scalar_one() == count:
                return
    auditlog.metadata.drop_all(engine)
    auditlog.create_tables(engine)
    with engine.begin() as connection:
        connection.execute(content_type_table.insert().values(id=1, name="shop.models.Order"))
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    for offset in range(0, count, 10_000):
        n = min(10_000, count - offset)
        at = start + dt.timedelta(milliseconds=offset)
        rows = [
            {
                "id": ulid,
                "tenant_id": f"tenant-{i % 10}",
                "user_id": f"user-{i % 97}",
                "action_type": "update",
                "timestamp": at,
                "ip_address": "203.0.113.7",
                "user_agent": "bench/1.0",
                "object_id": str(offset + i),
                "content_type": 1,
                "before_state": {"id": offset + i, "status": "open", "total": "19.90"},
                "after_state": {"id": offset + i, "status": "paid", "total": "19.90"},
                "changed_fields": ["status"],
            }
            for i, ulid in enumerate(new_ulids(at, n))
        ]
        with engine.begin() as connection:
            connection.execute(audit_log_table.insert(), rows)


async def drain(engine: Engine, nats_url: str, batch: int) -> tuple[int, float]:
    suffix = uuid.uuid4().hex[:10]
    name, stream = f"bench-{suffix}", f"BENCH_{suffix}"
    source = RelaySource(engine, name=name, batch_size=batch)
    sink = JetStreamSink(
        nats_url, stream=stream, subject=f"bench{suffix}.{{tenant}}.{{model}}", relay_name=name
    )
    await sink.connect()
    try:
        began = time.perf_counter()
        sent = await run_relay(source, sink, once=True, interval=3600, progress=lambda _: None)
        seconds = time.perf_counter() - began
        await sink._js.delete_stream(stream)
    finally:
        await sink.close()
    with engine.begin() as connection:
        for table in (auditlog.relay.relay_entry_table, auditlog.relay.relay_table):
            key = table.c.relay if "relay" in table.c else table.c.name
            connection.execute(table.delete().where(key == name))
    return sent, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("AUDITLOG_BENCH_RELAY_URL", DEFAULT_URL)
    )
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    engine = sa.create_engine(args.database_url)
    seed(engine, args.entries)
    rates = []
    for run in range(1, args.runs + 1):
        sent, seconds = asyncio.run(drain(engine, args.nats, args.batch))
        assert sent == args.entries, (sent, args.entries)
        rates.append(sent / seconds)
        print(f"run {run}: {sent:,} entries in {seconds:.2f} s: {sent / seconds:,.0f}/s")
    print(
        f"median of {args.runs}: {statistics.median(rates):,.0f} entries/s "
        f"({engine.dialect.name}, batch {args.batch:,})"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
