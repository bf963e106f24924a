"""``auditlog export``: every entry matching the filters, as JSON Lines or CSV.

The entries are read a page at a time along a cursor (newest first), so memory stays the same
however many there are, and each page is written before the next is read. JSON Lines holds one
entry a line, exactly as ``GET /history/`` shows it; CSV has one column per field, with the
JSON-valued ones (states, diff, extra) as JSON text. On a terminal, stderr shows how far it got.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..exceptions import InvalidQueryError
from ..models import audit_log_table
from ..query import AuditLogEntry, Cursor, CursorQuery
from ..query.filters import apply_filters, resolve_content_type
from ..query.pages import cursor_page
from .database import CommandError, first_line, open_database
from .history import terminal_safe

__all__ = ["EXPORT_FORMATS", "export_command"]

EXPORT_FORMATS = ("jsonl", "csv")
_FIELDS = list(AuditLogEntry.model_fields)


def _entries(session: Session, query: CursorQuery) -> Iterator[AuditLogEntry]:
    while True:
        page = cursor_page(session, query)
        yield from page.results
        if page.next_cursor is None:
            return
        query = query.model_copy(update={"cursor": Cursor.decode(page.next_cursor)})


def _csv_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "" if value is None else value


class _Progress:
    """``exported N of M`` on stderr, redrawn in place, when stderr is a terminal."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.shown = sys.stderr.isatty() and total is not None

    def update(self, done: int, *, final: bool = False) -> None:
        if self.shown and (final or done % 100 == 0):
            end = "\n" if final else ""
            print(f"\rexported {done:,} of {self.total:,}", end=end, file=sys.stderr, flush=True)


def export_command(args: argparse.Namespace) -> int:
    """Write the entries the filters select to ``--output`` (or stdout)."""
    arguments = {name: getattr(args, name) for name in CursorQuery.model_fields if name != "cursor"}
    try:
        query = CursorQuery.parse(**arguments)
    except InvalidQueryError as exc:
        raise CommandError(f"--{exc.argument.replace('_', '-')}: {exc.message}", 2) from None
    engine = open_database(args.database_url)
    done = 0
    try:
        with ExitStack() as stack:
            out: IO[str] = sys.stdout
            if args.output:
                try:
                    out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
                except OSError as exc:
                    raise CommandError(f"--output: cannot write {args.output!r}: {exc}") from None
            session = stack.enter_context(Session(engine))
            try:
                query = resolve_content_type(session, query)
            except InvalidQueryError as exc:
                raise CommandError(f"--content-type: {exc.message}", 2) from None
            progress = _Progress(
                session.execute(
                    apply_filters(sa.select(sa.func.count()).select_from(audit_log_table), query)
                ).scalar_one()
                if sys.stderr.isatty()
                else None
            )
            writer = csv.DictWriter(out, _FIELDS) if args.format == "csv" else None
            if writer is not None:
                writer.writeheader()
            for entry in _entries(session, query):
                data = entry.model_dump(mode="json")
                if writer is not None:
                    writer.writerow({k: _csv_value(v) for k, v in data.items()})
                else:
                    line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                    out.write((terminal_safe(line) if out is sys.stdout else line) + "\n")
                done += 1
                progress.update(done)
            progress.update(done, final=True)
            out.flush()
    except SQLAlchemyError as exc:
        raise CommandError(f"the query failed: {first_line(exc)}") from None
    finally:
        engine.dispose()
    return 0
