"""The ``auditlog`` command: ``demo``, ``serve`` and ``history`` (see docs/cli.md).

Exit status: 0 on success, 1 when the database cannot be used (unreachable, no ``audit_log``
table, a failing query) or the server cannot listen, 2 for bad arguments. Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import __version__
from .exceptions import InvalidQueryError
from .http import TOKEN_PATTERN, Principal, make_wsgi_app, token_authenticator
from .query import HistoryQuery, query_history

__all__ = ["main"]

#: Environment variables read by the command line.
DATABASE_URL_ENV = "AUDITLOG_DATABASE_URL"
TOKENS_ENV = "AUDITLOG_TOKENS"
_CONNECT_TIMEOUT_DRIVERS = {"psycopg", "psycopg2", "pymysql", "mysqldb"}


class CommandError(Exception):
    """A failure to report on stderr with an exit status, without a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# --- the database -------------------------------------------------------------------------------


def _url(raw: str | None) -> URL:
    if not raw:
        raise CommandError(f"--database-url is required (or set {DATABASE_URL_ENV})", 2)
    try:
        url = sa.make_url(raw)
    except ArgumentError:
        raise CommandError(f"--database-url: {raw!r} is not a database URL", 2) from None
    driver = url.drivername.partition("+")[2]  # explicit only: the default needs the dialect
    if driver in _CONNECT_TIMEOUT_DRIVERS and "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": "10"})
    return url


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def open_database(raw_url: str | None, *, create: bool = False) -> Engine:
    """An engine on a reachable database holding ``audit_log`` (created when ``create``)."""
    url = _url(raw_url)
    path = _sqlite_file(url)
    if path is not None and not create and not path.is_file():
        raise CommandError(f"no SQLite database file at {str(path)!r}")
    try:
        engine = sa.create_engine(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise CommandError(f"--database-url: cannot use {_shown(url)}: {exc}", 2) from None
    try:
        with engine.connect() as connection:
            if create:
                from .models import create_tables

                create_tables(connection)
                connection.commit()
            elif not sa.inspect(connection).has_table("audit_log"):
                raise CommandError(
                    f"{_shown(url)} has no audit_log table; create it with "
                    "auditlog.create_tables(engine) (or try `auditlog demo`)"
                )
    except SQLAlchemyError as exc:
        engine.dispose()
        raise CommandError(f"cannot use the database {_shown(url)}: {_first_line(exc)}") from None
    except CommandError:
        engine.dispose()
        raise
    return engine


# --- serving ------------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _base_url(host: str, port: int) -> str:
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so cleanup runs when a supervisor stops the server."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(app: Any, host: str, port: int, banner: Callable[[str], list[str]]) -> int:
    server_class = _Server6 if ":" in host else _Server
    try:
        server = make_server(host, port, app, server_class=server_class)
    except (OSError, OverflowError) as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
    with server, _stop_on_sigterm():
        for line in banner(_base_url(host, server.server_port)):
            print(line, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("auditlog: stopped", file=sys.stderr, flush=True)
    return 0


# --- subcommands --------------------------------------------------------------------------------


def _check_token(token: str, where: str) -> str:
    if not TOKEN_PATTERN.fullmatch(token):
        raise CommandError(f"{where}: a token is letters, digits and -._~+/ (got {token!r})", 2)
    return token


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_sample_app

    token = _check_token(args.token, "--token") if args.token else secrets.token_urlsafe(24)
    stack = ExitStack()
    try:
        raw_url = args.database_url
        if raw_url is None:
            folder = tempfile.mkdtemp(prefix="auditlog-demo-")
            stack.callback(shutil.rmtree, folder, ignore_errors=True)
            raw_url = f"sqlite:///{Path(folder) / 'auditlog-demo.sqlite3'}"
        engine = open_database(raw_url, create=True)
        stack.callback(engine.dispose)
        try:
            run = run_sample_app(engine)
        except SQLAlchemyError as exc:
            raise CommandError(f"the sample application failed: {_first_line(exc)}") from None
        tenant = run.tenants[0]
        app = make_wsgi_app(
            sessionmaker(engine),
            token_authenticator({token: Principal(tenant.id, tenant.users[0])}),
        )
        names = ", ".join(t.name for t in run.tenants)

        def banner(base: str) -> list[str]:
            return [
                f"auditlog demo: {run.entries} audit entries for {len(run.tenants)} tenants "
                f"({names}) in {_shown(engine.url)}",
                f"Serving GET /history/ at {base}/history/ (Ctrl+C to stop)",
                f"Token (tenant {tenant.name}, {tenant.id}): {token}",
                "Try:",
                f'  curl -H "Authorization: Bearer {token}" "{base}/history/?action_type=create"',
            ]

        return _serve(app, args.host, args.port, banner)
    finally:
        stack.close()


def _tokens(tokens_file: str | None) -> dict[str, str]:
    """Bearer token -> tenant id, from AUDITLOG_TOKENS and the tokens file (one pair a line)."""
    entries = [(TOKENS_ENV, item) for item in os.environ.get(TOKENS_ENV, "").split(",")]
    if tokens_file:
        try:
            text = Path(tokens_file).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise CommandError(f"--tokens-file: cannot read {tokens_file!r}: {exc}", 2) from None
        entries += [(tokens_file, line) for line in text.splitlines()]
    tokens: dict[str, str] = {}
    for where, entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        token, sep, tenant = (part.strip() for part in entry.partition("="))
        if not sep or not token or not tenant:
            raise CommandError(f"{where}: expected token=tenant_id, got {entry!r}", 2)
        tokens[_check_token(token, where)] = tenant
    if not tokens:
        raise CommandError(f"no tokens: set {TOKENS_ENV}=token=tenant_id,... or --tokens-file", 2)
    return tokens


def _serve_command(args: argparse.Namespace) -> int:
    tokens = _tokens(args.tokens_file)
    engine = open_database(args.database_url)
    try:
        app = make_wsgi_app(sessionmaker(engine), token_authenticator(tokens))
        tenants = len(set(tokens.values()))

        def banner(base: str) -> list[str]:
            return [
                f"auditlog serve: {_shown(engine.url)}, {len(tokens)} token(s) for "
                f"{tenants} tenant(s)",
                f"Serving GET /history/ at {base}/history/ (Ctrl+C to stop)",
            ]

        return _serve(app, args.host, args.port, banner)
    finally:
        engine.dispose()


_FILTERS = (
    "tenant_id", "user_id", "ip_address", "action_type", "object_id", "content_type", "since",
    "until", "page", "page_size",
)  # fmt: skip


def _history(args: argparse.Namespace) -> int:
    arguments = {name: getattr(args, name) for name in _FILTERS}
    if isinstance(arguments["content_type"], str) and arguments["content_type"].isdecimal():
        arguments["content_type"] = int(arguments["content_type"])
    try:
        HistoryQuery.parse(**arguments)
    except InvalidQueryError as exc:
        option = "--" + exc.argument.replace("_", "-")
        raise CommandError(f"{option}: {exc.message}", 2) from None
    engine = open_database(args.database_url)
    try:
        with Session(engine) as session:
            page = query_history(session, **arguments)
    except SQLAlchemyError as exc:
        raise CommandError(f"the query failed: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    text = json.dumps(page.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(text.encode())
    sys.stdout.flush()
    return 0


# --- arguments ----------------------------------------------------------------------------------


def _datetime(value: str) -> dt.datetime:
    try:
        return TypeAdapter(dt.datetime).validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {value!r}") from None


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

    demo = commands.add_parser(
        "demo",
        parents=[server],
        help="write a sample app's audit entries, then serve GET /history/",
        description="Run a small sample application's writes through auditlog (on a temporary "
        "SQLite file unless --database-url), then serve GET /history/ for one of its tenants.",
    )
    demo.add_argument("--token", help="bearer token to accept (default: a random one)")
    demo.add_argument("--database-url", metavar="URL", help="write the sample entries here")
    demo.set_defaults(handler=_demo)

    serve = commands.add_parser(
        "serve",
        parents=[database, server],
        help="serve GET /history/ for an existing database",
        description=f"Serve GET /history/. Bearer tokens map to tenants through ${TOKENS_ENV} "
        "(token=tenant_id,token2=tenant_id2) and --tokens-file (one token=tenant_id a line).",
    )
    serve.add_argument("--tokens-file", metavar="PATH", help="file of token=tenant_id lines")
    serve.set_defaults(handler=_serve_command)

    history = commands.add_parser(
        "history",
        parents=[database],
        help="print one page of history as JSON",
        description="Print one page of audit entries, newest first, as the GET /history/ JSON.",
    )
    for name in ("tenant_id", "user_id", "ip_address", "object_id"):
        history.add_argument("--" + name.replace("_", "-"), metavar=name.upper())
    history.add_argument(
        "--action-type", metavar="ACTIONS", help="create, update, delete, access; comma-separated"
    )
    history.add_argument("--content-type", metavar="ID_OR_MODEL", help="content type id or name")
    history.add_argument("--since", type=_datetime, metavar="TIME", help="ISO 8601, inclusive")
    history.add_argument("--until", type=_datetime, metavar="TIME", help="ISO 8601, exclusive")
    history.add_argument("--page", type=int, default=1, help="page number, from 1 (1)")
    history.add_argument("--page-size", type=int, default=20, help="entries per page (20)")
    history.set_defaults(handler=_history)
    return parser


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
