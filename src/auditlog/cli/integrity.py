"""``auditlog seal`` and ``auditlog verify``: seal the log, and prove it unchanged.

``seal`` prints the new head (``<seal number>:<digest>``) on stdout and what it sealed on
stderr; publish the head somewhere the database's writers cannot reach. ``verify`` prints one
line per problem and a summary (or the whole report with ``--json``); exit status 0 when the log
is intact, 1 when it is not (or the database cannot be used), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from sqlalchemy.exc import SQLAlchemyError

from ..integrity import seal, verify
from ..integrity.verify import VerifyReport, parse_head
from .database import CommandError, first_line, open_database
from .history import terminal_safe

__all__ = ["check_head", "late_minutes", "print_report", "seal_command", "verify_command"]


def seal_command(args: argparse.Namespace) -> int:
    """Seal every entry not sealed yet; print the head."""
    if args.batch < 1:
        raise CommandError(f"--batch: must be a positive number of entries, not {args.batch}", 2)
    late = late_minutes(args.late)
    engine = open_database(args.database_url)
    try:
        result = seal(engine, batch=args.batch, late=late)
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot seal: {first_line(exc)}") from None
    finally:
        engine.dispose()
    print(
        f"sealed {result.entries} entries in {result.seals} seals",
        file=sys.stderr,
    )
    if result.head is None:
        print("nothing is sealed yet (the log is empty)", file=sys.stderr)
    else:
        print(result.head)
    return 0


def late_minutes(minutes: int) -> dt.timedelta:
    """``--late`` as a duration; a status-2 error naming it when negative."""
    if not 0 <= minutes <= _LATE_MAX:
        raise CommandError(
            f"--late: must be a number of minutes from 0 to {_LATE_MAX:,}, not {minutes}", 2
        )
    return dt.timedelta(minutes=minutes)


_LATE_MAX = 10 * 366 * 24 * 60  # ten years: no transaction runs longer


def check_head(head: str | None) -> None:
    """``--head``, when given, as a published head; a status-2 error naming it otherwise."""
    if head is not None:
        try:
            parse_head(head)
        except ValueError as exc:
            raise CommandError(f"--head: {exc}", 2) from None


def print_report(report: VerifyReport, *, as_json: bool) -> None:
    """A verify report: one line per problem and a summary, or the whole report as JSON."""
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    for problem in report.problems:
        print(f"{problem.kind}: {terminal_safe(problem.detail)}")
    state = "intact" if report.intact else f"NOT intact: {len(report.problems)} problems"
    pruned = f" ({report.pruned} of them pruned)" if report.pruned else ""
    print(
        f"{state}; {report.sealed} entries in {report.seals} seals{pruned}, "
        f"{len(report.unsealed)} not sealed yet; head {report.head or '(none)'}"
    )


def verify_command(args: argparse.Namespace) -> int:
    """Verify the log; 0 when intact, 1 otherwise."""
    if args.archive is not None:  # an archive file, offline: no database
        from .archive import verify_archive_command

        return verify_archive_command(args)
    check_head(args.head)
    late = late_minutes(args.late)
    engine = open_database(args.database_url)
    try:
        report = verify(engine, head=args.head, tenant_id=args.tenant_id, late=late)
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot verify: {first_line(exc)}") from None
    finally:
        engine.dispose()
    print_report(report, as_json=args.json)
    return 0 if report.intact else 1
