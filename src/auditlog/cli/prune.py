"""``auditlog prune``: remove the entries older than a date, in short transactions.

Progress goes to stderr, one line per batch (redrawn in place on a terminal); the summary to
stdout. Interrupting it (Ctrl-C) stops after the batch in progress rolls back: every committed
batch is recorded, and running the command again goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..lifecycle.prune import BATCH_SIZE, MAX_BATCH_SIZE, PAUSE, PruneProgress, cutoff, prune
from .database import CommandError, first_line, open_database

__all__ = ["add_prune_parser", "prune_command"]


def _batch_size(value: str) -> int:
    if not value.isdecimal() or not 1 <= int(value) <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"not a number of entries from 1 to {MAX_BATCH_SIZE:,}: {value!r}"
        )
    return int(value)


def _pause(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 0 to 60: {value!r}")
    return seconds


def add_prune_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
    datetime_type: Callable[[str], dt.datetime],
) -> None:
    """Register ``auditlog prune``."""
    prune_parser = commands.add_parser(
        "prune",
        parents=parents,
        help="remove the entries older than a date, in short transactions",
        description="Remove every entry older than --before (to the millisecond; UTC when "
        "naive), of one tenant with --tenant, at most --batch-size per transaction. Safe to "
        "interrupt and to run again; with seals, verify reports the removed entries as pruned.",
    )
    prune_parser.add_argument(
        "--before", required=True, type=datetime_type, metavar="TIME", help="ISO 8601 date-time"
    )
    prune_parser.add_argument("--tenant", metavar="TENANT_ID", help="only this tenant's entries")
    prune_parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=BATCH_SIZE,
        metavar="N",
        help=f"entries removed per transaction ({BATCH_SIZE:,})",
    )
    prune_parser.add_argument(
        "--pause",
        type=_pause,
        default=PAUSE,
        metavar="SECONDS",
        help=f"wait this long between two batches, to spread the prune's writes out ({PAUSE})",
    )
    prune_parser.add_argument("--reason", help="why, recorded with the prune")
    prune_parser.set_defaults(handler=prune_command)


def prune_command(args: argparse.Namespace) -> int:
    """Prune; print what was removed."""
    try:
        cutoff(args.before, what="--before")
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    if args.tenant is not None and not args.tenant:
        raise CommandError("--tenant: must not be empty", 2)
    engine = open_database(args.database_url)
    terminal = sys.stderr.isatty()

    def show(progress: PruneProgress) -> None:
        rate = progress.deleted / progress.elapsed if progress.elapsed else 0.0
        line = (
            f"pruned {progress.deleted:,} entries ({progress.sealed:,} sealed) in "
            f"{progress.batches:,} batches, {rate:,.0f}/s"
        )
        print(f"\r{line}" if terminal else line, end="" if terminal else "\n", file=sys.stderr)

    try:
        result = prune(
            engine,
            before=args.before,
            tenant_id=args.tenant,
            batch_size=args.batch_size,
            reason=args.reason,
            progress=show,
            pause=args.pause,
        )
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot prune: {first_line(exc)}") from None
    finally:
        if terminal:
            print(file=sys.stderr)
        engine.dispose()
    dropped = f", {len(result.partitions)} partitions dropped" if result.partitions else ""
    print(
        f"pruned {result.deleted} entries older than {result.before.isoformat()} "
        f"({result.sealed} sealed){dropped} in {result.seconds:.1f} s"
    )
    return 0
