"""What both middlewares put in a request's audit context, and the options they share.

The client address (the peer, or what trusted proxies forwarded), the user agent (cleaned and
cut), and the user and tenant ids the application's getters return. The ASGI and WSGI
middlewares differ only in where they read these from and how long the context lasts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from ..exceptions import ContextError
from .proxies import (
    IPAddress,
    IPNetwork,
    ProxyHeader,
    TrustedProxies,
    check_proxy_header,
    client_address,
)

__all__ = ["ContextMiddleware", "refusal"]

App = TypeVar("App")
Getter = TypeVar("Getter")


class ContextMiddleware(Generic[App, Getter]):
    """The options of a middleware that opens an audit context per request."""

    def __init__(
        self,
        app: App,
        *,
        trusted_proxies: Iterable[str | IPAddress | IPNetwork] = (),
        proxy_header: ProxyHeader = "x-forwarded-for",
        get_user_id: Getter | None = None,
        get_tenant_id: Getter | None = None,
    ) -> None:
        self.app = app
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.proxy_header = check_proxy_header(proxy_header)
        self.get_user_id = get_user_id
        self.get_tenant_id = get_tenant_id

    def request_values(
        self, peer: str | None, forwarded: str | None, user_agent: str | None
    ) -> dict[str, Any]:
        """The ``ip_address`` and ``user_agent`` of a request's context (``audit_context``
        cleans the user agent)."""
        return {
            "ip_address": client_address(peer, forwarded, self.trusted_proxies, self.proxy_header),
            "user_agent": user_agent,
        }


def refusal(exc: ContextError) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and body of the 400 a middleware answers when a getter gave a value no entry
    can hold (an id too long, a control character): the request is refused, never run with its
    actor or tenant dropped, and never a 500."""
    body = json.dumps({"error": "invalid_context", "detail": str(exc)}).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return headers, body
