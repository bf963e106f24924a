"""``auditlog history``: one page of entries, newest first, as the ``GET /history/`` JSON; with
``--object-id X --as-of T``, the object's recorded state at that moment, as
``GET /history/state/`` answers."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..exceptions import InvalidQueryError
from ..integrations.http import run_query
from ..integrations.state import state_at
from ..models import audit_log_table as _t
from ..query import CursorQuery, HistoryQuery
from ..timetravel.asof import ENTRY_ID
from .database import CommandError, first_line, open_database

__all__ = ["history_command", "state_command", "terminal_safe"]

_TIME: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)


#: What ``json.dumps(ensure_ascii=False)`` leaves as it is and a terminal would act on.
_TERMINAL_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """JSON text with the characters a terminal would act on, or display as something else
    (C1 controls, DEL, bidirectional overrides), escaped as ``\\uXXXX``: still the same JSON.
    ``json.dumps`` escapes the C0 controls itself."""
    return _TERMINAL_UNSAFE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def _print(document: Any) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(terminal_safe(text).encode())
    sys.stdout.flush()


def _as_of(value: str) -> dt.datetime | str:
    """``--as-of``: an entry id, or an ISO 8601 time (UTC when naive)."""
    if ENTRY_ID.fullmatch(value.strip()):
        return value.strip().upper()
    try:
        moment = _TIME.validate_python(value)
    except ValidationError:
        raise CommandError(f"--as-of: not an ISO 8601 time or an entry id: {value!r}", 2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _content_types(session: Session, object_id: str) -> list[int]:
    """The content types with entries about ``object_id`` (under its key, or renamed to it)."""
    query = sa.select(sa.distinct(_t.c.content_type)).where(
        sa.or_(_t.c.object_id == object_id, _t.c.renamed_to == object_id)
    )
    return sorted(session.scalars(query))


def state_command(args: argparse.Namespace) -> int:
    """``--object-id X --as-of T``: print the object's recorded state at that moment."""
    at = _as_of(args.as_of)

    def read(session: Session) -> BaseModel:
        kind: int | str | None = args.content_type
        if isinstance(kind, str) and kind.isdecimal():
            kind = int(kind)
        if kind is None:
            kinds = _content_types(session, args.object_id)
            if len(kinds) > 1:
                raise CommandError(
                    f"--object-id {args.object_id!r} names objects of several models "
                    f"(content types {', '.join(map(str, kinds))}): give --content-type",
                    2,
                )
            kind = kinds[0] if kinds else 0
        try:
            return state_at(session, kind, args.object_id, at, tenant_id=args.tenant_id)
        except InvalidQueryError as exc:
            option = "--content-type" if exc.argument == "content_type" else "--as-of"
            raise CommandError(f"{option}: {exc.message}", 2) from None

    _print(_read(args.database_url, read))
    return 0


def history_command(args: argparse.Namespace) -> int:
    """Print the page the options select; their names are ``query_history``'s arguments."""
    if args.as_of is not None:
        if not args.object_id:
            raise CommandError("--as-of needs --object-id", 2)
        return state_command(args)
    kind: type[HistoryQuery] | type[CursorQuery] = HistoryQuery
    if args.cursor is not None:
        if args.page != 1:
            raise CommandError("--page and --cursor exclude each other", 2)
        kind = CursorQuery
    arguments = {name: getattr(args, name) for name in kind.model_fields}
    try:
        query = kind.parse(**arguments)
    except InvalidQueryError as exc:
        option = "--" + exc.argument.replace("_", "-")
        raise CommandError(f"{option}: {exc.message}", 2) from None

    def read(session: Session) -> BaseModel:
        try:
            return run_query(session, query)
        except InvalidQueryError as exc:
            raise CommandError(f"--{exc.argument.replace('_', '-')}: {exc.message}", 2) from None

    _print(_read(args.database_url, read))
    return 0


def _read(database_url: str | None, read: Callable[[Session], BaseModel]) -> Any:
    """What ``read`` finds in the database, as JSON; one-line errors."""
    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            return read(session).model_dump(mode="json")
    except SQLAlchemyError as exc:
        raise CommandError(f"the query failed: {first_line(exc)}") from None
    finally:
        engine.dispose()
