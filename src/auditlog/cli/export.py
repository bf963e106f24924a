"""``auditlog export``: the entries older than a date as an archive (JSON Lines, CSV or Parquet).

The archive holds what is needed to verify it offline (``auditlog verify --archive FILE``) and
to import it back (``auditlog import FILE``): see docs/archives.md. The log is read a page at a
time along its primary key, so memory stays the same however many entries there are. On a
terminal, stderr shows how far it got.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import IO

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from ..lifecycle.archive import FORMATS, PAGE_SIZE, ArchiveError, export_archive, id_floor
from ..lifecycle.prune import cutoff
from ..models import audit_log_table
from .database import CommandError, first_line, open_database

__all__ = ["EXPORT_FORMATS", "add_export_parser", "export_command"]

EXPORT_FORMATS = FORMATS


class _Progress:
    """``exported N of M`` on stderr, redrawn in place, when stderr is a terminal."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.shown = sys.stderr.isatty() and total is not None

    def __call__(self, done: int) -> None:
        if self.shown:
            print(f"\rexported {done:,} of {self.total:,}", end="", file=sys.stderr, flush=True)

    def finish(self, done: int) -> None:
        if self.shown:
            print(f"\rexported {done:,} of {self.total:,}", file=sys.stderr, flush=True)


def _count(engine: sa.Engine, before: dt.datetime, tenant_id: str | None) -> int:
    log = audit_log_table
    query = sa.select(sa.func.count()).where(log.c.timestamp < before, log.c.id < id_floor(before))
    if tenant_id is not None:
        query = query.where(log.c.tenant_id == tenant_id)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def export_command(args: argparse.Namespace) -> int:
    """Write the archive of the entries older than ``--before`` to ``--output`` (or stdout)."""
    if args.format == "parquet" and not args.output:
        raise CommandError("--format parquet needs --output FILE (Parquet is not a stream)", 2)
    if args.page_size < 1:
        raise CommandError(f"--page-size: must be a positive number, not {args.page_size}", 2)
    if args.tenant_id == "":
        raise CommandError("--tenant-id: must not be empty", 2)
    try:
        before = cutoff(args.before or dt.datetime.now(dt.timezone.utc), what="--before")
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    engine = open_database(args.database_url)
    try:
        progress = _Progress(
            _count(engine, before, args.tenant_id) if sys.stderr.isatty() else None
        )
        output: str | IO[bytes] = args.output or sys.stdout.buffer
        result = export_archive(
            engine,
            output,
            format=args.format,
            before=before,
            tenant_id=args.tenant_id,
            page_size=args.page_size,
            progress=progress,
        )
        progress.finish(result.entries)
    except ArchiveError as exc:
        raise CommandError(f"--output: {exc}" if args.output else str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"the query failed: {first_line(exc)}") from None
    finally:
        engine.dispose()
    if args.output:
        print(
            f"exported {result.entries:,} entries ({result.sealed:,} sealed) and "
            f"{result.seals:,} seals older than {result.before.isoformat()} to {args.output}",
            file=sys.stderr,
        )
    return 0


def add_export_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
    moment: Callable[[str], dt.datetime],
) -> None:
    """The ``export`` command's arguments (``moment`` parses an ISO 8601 date-time)."""
    export = commands.add_parser(
        "export",
        parents=list(parents),
        help="write the entries older than a date as an archive (JSON Lines, CSV, Parquet)",
        description="Write every audit entry older than --before (now by default), in id "
        "order, with their seals, as an archive that auditlog verify --archive checks offline "
        "and auditlog import brings back (docs/archives.md). Read a page at a time (constant "
        "memory); a progress line on stderr when it is a terminal.",
    )
    export.add_argument(
        "--before", type=moment, metavar="TIME", help="ISO 8601, exclusive (UTC when naive)"
    )
    export.add_argument("--tenant-id", metavar="ID", help="only this tenant's entries")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, default="jsonl", help="jsonl (default), csv, parquet"
    )
    export.add_argument(
        "--output", metavar="FILE", help="write here (default: stdout; parquet needs a file)"
    )
    export.add_argument(
        "--page-size", type=int, default=PAGE_SIZE, help=f"entries read per query ({PAGE_SIZE})"
    )
    export.set_defaults(handler=export_command)
