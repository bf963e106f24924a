"""``auditlog partitions``: create the coming months' partitions of ``audit_log`` (PostgreSQL).

``--ahead N`` creates this month's partition, the next N months' and the default partition,
those missing, and prints one line per partition created (nothing when none was missing: run
it from cron). ``--list`` prints every partition with its bounds and PostgreSQL's estimate of
its entries. See docs/partitions.md.
"""

from __future__ import annotations

import argparse
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..exceptions import ConfigurationError
from ..lifecycle.partitions import (
    MAX_AHEAD,
    Partition,
    create_partitions,
    estimated_rows,
    is_partitioned,
    list_partitions,
)
from .database import CommandError, first_line, open_database, shown

__all__ = ["add_partitions_parser", "partitions_command"]


def _ahead(value: str) -> int:
    if not value.isdecimal() or int(value) > MAX_AHEAD:
        raise argparse.ArgumentTypeError(f"not a number of months from 0 to {MAX_AHEAD}: {value!r}")
    return int(value)


def add_partitions_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    database: argparse.ArgumentParser,
) -> None:
    """Register ``auditlog partitions``."""
    parser = commands.add_parser(
        "partitions",
        parents=[database],
        help="create the coming months' partitions of audit_log (PostgreSQL)",
        description="On a PostgreSQL audit_log partitioned by month (create_tables(engine, "
        "partitioned=True)), create this month's partition and the next --ahead months', and "
        "the default partition, those missing; print those created. Entries of a new month "
        "waiting in the default partition are moved into it. --list prints the partitions.",
    )
    parser.add_argument(
        "--ahead",
        type=_ahead,
        metavar="N",
        help=f"months after this one to create (0 to {MAX_AHEAD})",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print every partition, its bounds and its estimated entries",
    )
    parser.set_defaults(handler=partitions_command)


def _bound(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _describe(partition: Partition) -> str:
    if partition.is_default:
        return f"{partition.name}  DEFAULT (entries outside every month)"
    return f"{partition.name}  from {_bound(partition.lower)} to {_bound(partition.upper)}"


def partitions_command(args: argparse.Namespace) -> int:
    """Create the missing partitions and print them; with ``--list``, print them all."""
    if args.ahead is None and not args.list:
        raise CommandError("give --ahead N (months to create after this one), --list or both", 2)
    if args.database_url:
        try:
            backend = sa.make_url(args.database_url).get_backend_name()
        except ArgumentError:
            backend = "postgresql"  # open_database names the bad URL
        if backend != "postgresql":
            raise CommandError(
                f"partitions of audit_log need PostgreSQL; --database-url is {backend}"
            )
    engine = open_database(args.database_url)
    try:
        with engine.connect() as connection:
            if not is_partitioned(connection):
                raise CommandError(
                    f"audit_log in {shown(engine.url)} is not partitioned: create it with "
                    "create_tables(engine, partitioned=True), or move it to partitions "
                    '(docs/partitions.md, "Moving an existing table to partitions")'
                )
        if args.ahead is not None:
            for partition in create_partitions(engine, ahead=args.ahead):
                print(f"created {_describe(partition)}")
        if args.list:
            with engine.connect() as connection:
                estimates = estimated_rows(connection)
                for partition in list_partitions(connection):
                    rows = estimates.get(partition.name)
                    size = (
                        "entries unknown (not analyzed yet)"
                        if rows is None
                        else f"~{rows:,} entries"
                    )
                    print(f"{_describe(partition)}  {size}")
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot create the partitions: {first_line(exc)}") from None
    finally:
        engine.dispose()
    return 0
