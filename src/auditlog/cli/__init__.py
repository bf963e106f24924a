"""The ``auditlog`` command: ``demo``, ``serve``, ``history``, ``export``, ``import``, ``seal``,
``verify``, ``erase``, ``prune``, ``partitions`` and ``relay`` (see docs/cli.md).

One module per command; this one holds the argument parser and :func:`main`. Exit status: 0 on
success, 1 when the database cannot be used or the server cannot listen, 2 for bad arguments.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from .. import __version__
from ..integrity.seal import BATCH as SEAL_BATCH
from ..query.counts import COUNT_LIMIT
from .archive import add_import_parser
from .database import DATABASE_URL_ENV, CommandError
from .demo import TOKEN_ENV, demo_command
from .erase import add_erase_parser
from .export import add_export_parser
from .history import history_command
from .integrity import seal_command, verify_command
from .partitions import add_partitions_parser
from .prune import add_prune_parser
from .relay import add_relay_parser
from .serve import IDLE_TIMEOUT, TOKENS_ENV, serve_command

__all__ = ["main"]


def _datetime(value: str) -> dt.datetime:
    try:
        return TypeAdapter(dt.datetime).validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {value!r}") from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"not a number of seconds (0 to 3600): {value!r}")
    return seconds


def _port(value: str) -> int:
    if not value.isdecimal() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {value!r}")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditlog", description="Who changed what, when and from where."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV) or None,
        metavar="URL",
        help=f"SQLAlchemy database URL (default: ${DATABASE_URL_ENV})",
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="port; 0 picks a free one (8000)")
    server.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close a connection silent this long ({IDLE_TIMEOUT})",
    )

    demo = commands.add_parser(
        "demo",
        parents=[server],
        help="write a sample app's audit entries, then serve GET /history/",
        description="Run a small sample application's writes through auditlog (on a temporary "
        "SQLite file unless --database-url), then serve GET /history/ for one of its tenants.",
    )
    demo.add_argument(
        "--token",
        help=f"bearer token to accept (default: ${TOKEN_ENV}, or a random one); other users "
        "can read it in the process list: prefer --token-file or the variable",
    )
    demo.add_argument("--token-file", metavar="PATH", help="read the bearer token from a file")
    demo.add_argument("--database-url", metavar="URL", help="write the sample entries here")
    demo.set_defaults(handler=demo_command)

    serve = commands.add_parser(
        "serve",
        parents=[database, server],
        help="serve GET /history/ for an existing database",
        description=f"Serve GET /history/. Bearer tokens map to tenants through ${TOKENS_ENV} "
        "(token=tenant_id,token2=tenant_id2) and --tokens-file (one token=tenant_id a line).",
    )
    serve.add_argument("--tokens-file", metavar="PATH", help="file of token=tenant_id lines")
    serve.add_argument(
        "--exact-count",
        dest="count_limit",
        action="store_const",
        const=None,
        default=COUNT_LIMIT,
        help=f"count every matching entry of a page's query, however many (by default, past "
        f"{COUNT_LIMIT:,} the count is the database's estimate)",
    )
    serve.set_defaults(handler=serve_command)

    filters = argparse.ArgumentParser(add_help=False)
    for name in ("tenant_id", "user_id", "ip_address", "object_id"):
        filters.add_argument("--" + name.replace("_", "-"), metavar=name.upper())
    filters.add_argument(
        "--action-type", metavar="ACTIONS", help="create, update, delete, access; comma-separated"
    )
    filters.add_argument("--content-type", metavar="ID_OR_MODEL", help="content type id or name")
    filters.add_argument("--since", type=_datetime, metavar="TIME", help="ISO 8601, inclusive")
    filters.add_argument(
        "--until", "--before", type=_datetime, metavar="TIME", help="ISO 8601, exclusive"
    )
    filters.add_argument(
        "--transaction-id", metavar="ID", help="only entries of this database transaction"
    )

    history = commands.add_parser(
        "history",
        parents=[database, filters],
        help="print one page of history as JSON",
        description="Print one page of audit entries, newest first, as the GET /history/ JSON.",
    )
    history.add_argument("--page", type=int, default=1, help="page number, from 1 (1)")
    history.add_argument("--page-size", type=int, default=20, help="entries per page (20)")
    history.add_argument(
        "--cursor",
        metavar="CURSOR",
        help="read on from a page's next_cursor (or previous_cursor): keyset pages",
    )
    history.add_argument(
        "--exact-count",
        dest="count_limit",
        action="store_const",
        const=None,
        default=COUNT_LIMIT,
        help=f"count every matching entry, however many (by default, past {COUNT_LIMIT:,} the "
        "count is the database's estimate)",
    )
    history.add_argument(
        "--as-of",
        metavar="TIME_OR_ENTRY",
        help="with --object-id: the object's recorded state at this ISO 8601 time (UTC when "
        "naive) or just after this entry id",
    )
    history.set_defaults(handler=history_command)

    add_export_parser(commands, [database], _datetime)

    seal = commands.add_parser(
        "seal",
        parents=[database],
        help="seal every entry not sealed yet; print the new head to publish",
        description="Seal every committed entry that is in no seal yet into new seals chained "
        "by hash, each in its own transaction. Prints the head (<seal number>:<digest>) on "
        "stdout: publish it outside the database, so that verify can tell a truncated or "
        "rewritten log.",
    )
    seal.add_argument(
        "--batch", type=int, default=SEAL_BATCH, help=f"entries per seal at most ({SEAL_BATCH})"
    )
    _late_argument(seal)
    seal.set_defaults(handler=seal_command)

    verify = commands.add_parser(
        "verify",
        parents=[database],
        help="recompute every seal and sealed entry; exit 1 when anything was altered",
        description="Recompute every seal and sealed entry and name each problem (an entry "
        "changed, removed or inserted among sealed ones, a seal changed or removed, the "
        "published head gone or different). Exit status 0 when intact, 1 otherwise.",
    )
    verify.add_argument(
        "--head", metavar="SEQ:DIGEST", help="the last head published by auditlog seal"
    )
    verify.add_argument(
        "--tenant-id", metavar="ID", help="recompute only this tenant's entries (and the seals)"
    )
    verify.add_argument("--json", action="store_true", help="the whole report as JSON")
    verify.add_argument(
        "--archive", metavar="FILE", help="verify this archive (auditlog export) instead, offline"
    )
    _late_argument(verify)
    verify.set_defaults(handler=verify_command)
    add_erase_parser(commands, [database])
    add_prune_parser(commands, [database], _datetime)
    add_import_parser(commands, [database])
    add_partitions_parser(commands, database)
    add_relay_parser(commands, database)
    return parser


def _late_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--late",
        type=int,
        default=60,
        metavar="MINUTES",
        help="the longest a transaction runs: an entry in no seal older than the newest seal "
        "by more than this was inserted, not committed late (60; give seal and verify the same)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``auditlog`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except CommandError as exc:
        print(f"auditlog {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return status
