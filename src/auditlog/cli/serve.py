"""``auditlog serve``: ``GET /history/`` for an existing database, and the server ``auditlog demo``
runs too (threads, IPv4 or IPv6, stopped cleanly by Ctrl+C or SIGTERM)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy.orm import sessionmaker

from ..integrations.http import TOKEN_PATTERN, token_authenticator
from ..integrations.server import make_wsgi_app
from .database import CommandError, open_database, shown

__all__ = ["IDLE_TIMEOUT", "TOKENS_ENV", "check_token", "serve", "serve_command"]

#: The environment variable of the bearer tokens ``auditlog serve`` accepts.
TOKENS_ENV = "AUDITLOG_TOKENS"
#: Seconds a connection may stay silent before the server closes it (and frees its thread).
IDLE_TIMEOUT = 30
#: ``token=tenant_id``: the token's own ``=`` padding stays with the token.
_PAIR = re.compile(r"(.+?=*)\s*=\s*(.+)")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went silent or away is not an error of the server's."""
        if isinstance(sys.exc_info()[1], (TimeoutError, ConnectionError)):
            return
        super().handle_error(request, client_address)


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


def serve(
    app: Any,
    host: str,
    port: int,
    banner: Callable[[str], list[str]],
    idle_timeout: float = IDLE_TIMEOUT,
) -> int:
    """Serve ``app`` until Ctrl+C or SIGTERM; a connection silent for ``idle_timeout`` seconds
    is closed, so that idle clients cannot hold the server's threads."""
    server_class = _Server6 if ":" in host else _Server
    handler = type("Handler", (WSGIRequestHandler,), {"timeout": idle_timeout})
    try:
        server = make_server(host, port, app, server_class=server_class, handler_class=handler)
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


def check_token(token: str, where: str) -> str:
    if not TOKEN_PATTERN.fullmatch(token):
        raise CommandError(f"{where}: a token is letters, digits and -._~+/ (got {token!r})", 2)
    return token


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
        pair = _PAIR.fullmatch(entry)
        if pair is None or not pair[2].strip():
            raise CommandError(f"{where}: expected token=tenant_id, got {entry!r}", 2)
        tokens[check_token(pair[1].strip(), where)] = pair[2].strip()
    if not tokens:
        raise CommandError(f"no tokens: set {TOKENS_ENV}=token=tenant_id,... or --tokens-file", 2)
    return tokens


def serve_command(args: argparse.Namespace) -> int:
    """Serve ``GET /history/`` for the database, to the configured tokens."""
    tokens = _tokens(args.tokens_file)
    engine = open_database(args.database_url)
    try:
        app = make_wsgi_app(
            sessionmaker(engine), token_authenticator(tokens), count_limit=args.count_limit
        )
        tenants = len(set(tokens.values()))

        def banner(base: str) -> list[str]:
            return [
                f"auditlog serve: {shown(engine.url)}, {len(tokens)} token(s) for "
                f"{tenants} tenant(s)",
                f"Serving GET /history/ at {base}/history/ (Ctrl+C to stop)",
                f"Viewer: {base}/history/view/",
            ]

        return serve(app, args.host, args.port, banner, args.idle_timeout)
    finally:
        engine.dispose()
