"""``auditlog import FILE`` and ``auditlog verify --archive FILE``: archives brought back and proved.

``import`` writes an archive made by ``auditlog export`` into a database (its tables made when
missing), in one transaction; it refuses a damaged archive and one whose content types or seals
conflict with the database's, writing nothing. ``verify --archive`` needs no database: exit 0
when the archive is intact, 1 otherwise, 2 for bad arguments. See docs/archives.md.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from ..lifecycle.archive import ArchiveError, import_archive, verify_archive
from .database import DATABASE_URL_ENV, CommandError, first_line, open_database
from .integrity import check_head, late_minutes, print_report

__all__ = ["add_import_parser", "import_command", "verify_archive_command"]


def _archive(path: str) -> Path:
    archive = Path(path)
    if not archive.is_file():
        raise CommandError(f"no archive file at {path!r}", 2)
    return archive


def import_command(args: argparse.Namespace) -> int:
    """Import the archive; print what was written."""
    archive = _archive(args.file)
    engine = open_database(args.database_url, create=True)
    try:
        result = import_archive(engine, archive)
    except ArchiveError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot import: {first_line(exc)}") from None
    finally:
        engine.dispose()
    print(
        f"imported {result.entries:,} entries ({result.skipped:,} already there), "
        f"{result.seals:,} seals ({result.seals_skipped:,} already there), "
        f"{result.content_types:,} content types"
    )
    if result.gone:
        print(
            f"{result.gone:,} sealed entries the archive does not hold are recorded as gone "
            f"(audit_prune {result.prune_id}, kind import)"
        )
    return 0


def verify_archive_command(args: argparse.Namespace) -> int:
    """``auditlog verify --archive FILE``: 0 when intact, 1 otherwise."""
    if getattr(args, "tenant_id", None) is not None:
        raise CommandError("--tenant-id does not apply to --archive", 2)
    if args.database_url not in (None, os.environ.get(DATABASE_URL_ENV) or None):
        raise CommandError(
            "--database-url does not apply to --archive (the archive is verified from the "
            "file alone; verify without --archive checks a database)",
            2,
        )
    check_head(args.head)
    archive = _archive(args.archive)
    try:
        report = verify_archive(archive, head=args.head, late=late_minutes(args.late))
    except ArchiveError as exc:
        raise CommandError(str(exc)) from None
    print_report(report, as_json=args.json)
    return 0 if report.intact else 1


def add_import_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> None:
    """The ``import`` command's arguments."""
    command = commands.add_parser(
        "import",
        parents=list(parents),
        help="bring an archive made by auditlog export back into a database",
        description="Write an archive made by auditlog export into the database (its tables "
        "made when missing), in one transaction. A damaged archive, or one whose content types "
        "or seals conflict with the database's, is refused and nothing is written. Entries and "
        "seals already there are skipped: importing twice is harmless.",
    )
    command.add_argument("file", metavar="FILE", help="the archive (JSON Lines, CSV or Parquet)")
    command.set_defaults(handler=import_command)
