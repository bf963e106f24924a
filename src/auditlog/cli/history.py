"""``auditlog history``: one page of entries, newest first, as the ``GET /history/`` JSON."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..exceptions import InvalidQueryError
from ..query import HistoryQuery
from ..query.pages import numbered_page
from .database import CommandError, first_line, open_database

__all__ = ["history_command"]


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
    sys.stdout.buffer.write(text.encode())
    sys.stdout.flush()
    return 0
