"""``auditlog history``: one page of entries, newest first, as the ``GET /history/`` JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..exceptions import InvalidQueryError
from ..query import HistoryQuery
from ..query.pages import numbered_page
from .database import CommandError, first_line, open_database

__all__ = ["history_command", "terminal_safe"]


#: What ``json.dumps(ensure_ascii=False)`` leaves as it is and a terminal would act on.
_TERMINAL_UNSAFE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """JSON text with the characters a terminal would act on, or display as something else
    (C1 controls, DEL, bidirectional overrides), escaped as ``\\uXXXX``: still the same JSON.
    ``json.dumps`` escapes the C0 controls itself."""
    return _TERMINAL_UNSAFE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def history_command(args: argparse.Namespace) -> int:
    """Print the page the options select; their names are ``query_history``'s arguments."""
    arguments = {name: getattr(args, name) for name in HistoryQuery.model_fields}
    try:
        query = HistoryQuery.parse(**arguments)
    except InvalidQueryError as exc:
        option = "--" + exc.argument.replace("_", "-")
        raise CommandError(f"{option}: {exc.message}", 2) from None
    engine = open_database(args.database_url)
    try:
        with Session(engine) as session:
            page = numbered_page(session, query)
    except SQLAlchemyError as exc:
        raise CommandError(f"the query failed: {first_line(exc)}") from None
    finally:
        engine.dispose()
    text = json.dumps(page.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(terminal_safe(text).encode())
    sys.stdout.flush()
    return 0
