"""WSGI middleware that opens an audit context per request: Flask, Django, any WSGI app.

Wrap the application the way werkzeug's ProxyFix is wrapped::

    app.wsgi_app = AuditContextMiddleware(app.wsgi_app, trusted_proxies=["10.0.0.0/8"])  # Flask
    application = AuditContextMiddleware(get_wsgi_application())  # Django, in wsgi.py

When the context ends: a WSGI response body is an iterable that the server reads *after*
``__call__`` returns, and a streamed body may still write to the database. So the middleware runs
the application, every step of the body and its ``close()`` inside one copy of the caller's
contextvars (``contextvars.Context.run``), with the request's audit context open in that copy. The
context lasts until the server closes the body, and it can never leak into the server's thread:
the copy is simply dropped afterwards, even by a server that forgets to call ``close()``.
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

from ..context import USER_AGENT_MAX_LENGTH, AuditContext, audit_context
from ..exceptions import ContextError
from .request_context import ContextMiddleware, refusal

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["AuditContextMiddleware"]

WSGIApp: TypeAlias = "WSGIApplication"
#: Reads a value (user id, tenant id) from the WSGI environ.
EnvironGetter = Callable[["WSGIEnvironment"], Any]
_ENVIRON_KEYS = {"x-forwarded-for": "HTTP_X_FORWARDED_FOR", "forwarded": "HTTP_FORWARDED"}


class AuditContextMiddleware(ContextMiddleware[WSGIApp, EnvironGetter]):
    """Run each request inside :func:`auditlog.audit_context`, until its body is closed.

    The context carries the client address (``REMOTE_ADDR``), the user agent
    (``HTTP_USER_AGENT``), and the user and tenant ids that ``get_user_id(environ)`` /
    ``get_tenant_id(environ)`` return (``None`` leaves the value unset, for the app to give later
    with :func:`auditlog.update_context`, e.g. in a ``before_request`` hook).

    ``trusted_proxies`` lists the addresses and networks (``"10.0.0.0/8"``) of the reverse
    proxies in front of the app: only when ``REMOTE_ADDR`` is one of them is ``proxy_header``
    (``"x-forwarded-for"``, the default, or ``"forwarded"``, RFC 7239) read, and the client is
    the right-most address in it that is not a trusted proxy. Read only the header your proxies
    set: one they pass through untouched is written by the client.
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        context = contextvars.copy_context()
        block = audit_context(**self.context_values(environ))
        try:
            context.run(block.__enter__)
        except ContextError as exc:  # a getter's value no entry can hold: refused, never a 500
            headers, refused = refusal(exc)
            start_response("400 Bad Request", headers)
            return [refused]
        try:
            body = context.run(self.app, environ, start_response)
        except BaseException as exc:
            context.run(block.__exit__, type(exc), exc, exc.__traceback__)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            # A file sent as is (maybe with sendfile) writes nothing: keep the server's fast path.
            context.run(block.__exit__, None, None, None)
            return body
        return _ContextBody(body, context, block)

    def context_values(self, environ: WSGIEnvironment) -> dict[str, Any]:
        """The ``audit_context`` arguments for one request; override to add values (``extra``)."""
        peer = environ.get("REMOTE_ADDR")
        forwarded = environ.get(_ENVIRON_KEYS[self.proxy_header])
        user_agent = environ.get("HTTP_USER_AGENT")
        return {
            **self.request_values(
                peer if isinstance(peer, str) else None,
                forwarded if isinstance(forwarded, str) else None,
                _utf8(user_agent) if isinstance(user_agent, str) else None,
            ),
            "user_id": self.get_user_id(environ) if self.get_user_id else None,
            "tenant_id": self.get_tenant_id(environ) if self.get_tenant_id else None,
        }


def _utf8(header: str) -> str:
    """A header value as the client sent it: PEP 3333 servers decode the bytes as latin-1; they
    are taken as UTF-8 again, with U+FFFD for what is not (a bounded prefix)."""
    raw = header[: USER_AGENT_MAX_LENGTH * 8]
    try:
        return raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that already decoded it otherwise
        return raw


class _ContextBody:
    """The application's body, read and closed inside the request's context.

    The context block is exited by ``close()``, or when the body is garbage collected unclosed
    (some test clients and careless servers never call ``close()``); either way inside the copied
    context, where the block was entered.
    """

    __slots__ = ("__weakref__", "_body", "_context", "_exit", "_iterator", "_open")

    def __init__(
        self,
        body: Iterable[bytes],
        context: contextvars.Context,
        block: AbstractContextManager[AuditContext],
    ) -> None:
        self._body = body
        self._context = context
        self._exit = weakref.finalize(self, context.run, block.__exit__, None, None, None)
        self._iterator: Iterator[bytes] | None = None
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._body)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        close = getattr(self._body, "close", None)
        try:
            if close is not None:
                self._context.run(close)
        finally:
            self._exit()
