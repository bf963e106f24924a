"""ASGI middleware that opens an audit context per request: Starlette, FastAPI, Litestar, Quart...

A pure ASGI middleware (no ``BaseHTTPMiddleware``, which runs the app in another task and so cuts
contextvars propagation): the context is opened in the task that runs the app, so the endpoint,
its dependencies (sync ones in worker threads too), streaming bodies and background tasks all see
it, and :func:`auditlog.update_context` called anywhere in the request reaches every entry.

::

    app.add_middleware(
        AuditContextMiddleware,
        trusted_proxies=["10.0.0.0/8"],
        get_tenant_id=lambda scope: scope["state"].get("tenant_id"),  # set by your auth
    )

``get_user_id`` and ``get_tenant_id`` must return what the application has verified (a
session, a token's claims): a header the client sends as such would let it act as anyone.

(Path parameters are not known yet when a middleware runs: give a tenant found by routing with
:func:`auditlog.update_context` in a dependency.) A value no entry can hold (an id longer than
its column, a control character) is refused with a 400 naming it.

See docs/context.md for the full guide.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..context import USER_AGENT_MAX_LENGTH, audit_context
from ..exceptions import ContextError
from .request_context import ContextMiddleware, refusal

__all__ = ["AuditContextMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Reads a value (user id, tenant id) from the connection scope; may be sync or async.
ScopeGetter = Callable[[Scope], Any]


class AuditContextMiddleware(ContextMiddleware["ASGIApp", "ScopeGetter"]):
    """Run each HTTP request and WebSocket connection inside :func:`auditlog.audit_context`.

    The context carries the client address, the user agent, and the user and tenant ids that
    ``get_user_id(scope)`` / ``get_tenant_id(scope)`` return (sync or async callables; ``None``
    leaves the value unset, for the app to give later with :func:`auditlog.update_context`).

    ``trusted_proxies`` lists the addresses and networks (``"10.0.0.0/8"``) of the reverse
    proxies in front of the app: only when the immediate peer is one of them is ``proxy_header``
    (``"x-forwarded-for"``, the default, or ``"forwarded"``, RFC 7239) read, and the client is
    the right-most address in it that is not a trusted proxy. Read only the header your proxies
    set: one they pass through untouched is written by the client. Lifespan and other scope types
    pass straight through.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        block = audit_context(**await self.context_values(scope))
        try:
            block.__enter__()
        except ContextError as exc:
            await _refuse(scope, send, exc)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            block.__exit__(None, None, None)

    async def context_values(self, scope: Scope) -> dict[str, Any]:
        """The ``audit_context`` arguments for one connection; override to add values (``extra``)."""
        user_agent: str | None = None
        forwarded: list[str] = []
        header_name = self.proxy_header.encode("latin-1")
        for name, value in scope.get("headers") or ():
            name = name.lower()
            if name == b"user-agent" and user_agent is None:
                # a bounded prefix; UTF-8, with U+FFFD for what is not (a cut character too)
                user_agent = value[: USER_AGENT_MAX_LENGTH * 8].decode("utf-8", "replace")
            elif name == header_name:
                forwarded.append(value.decode("latin-1"))
        client = scope.get("client")
        peer = client[0] if client and isinstance(client[0], str) else None
        return {
            **self.request_values(peer, ",".join(forwarded) if forwarded else None, user_agent),
            "user_id": await _call(self.get_user_id, scope),
            "tenant_id": await _call(self.get_tenant_id, scope),
        }


async def _refuse(scope: Scope, send: Send, exc: ContextError) -> None:
    """A 400 naming the bad value (HTTP), or the connection closed as a policy violation."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})
        return
    headers, body = refusal(exc)
    raw = [(name.encode(), value.encode()) for name, value in headers]
    await send({"type": "http.response.start", "status": 400, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _call(getter: ScopeGetter | None, scope: Scope) -> Any:
    if getter is None:
        return None
    value = getter(scope)
    if inspect.isawaitable(value):
        value = await value
    return value
