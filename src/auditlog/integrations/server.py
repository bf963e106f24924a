"""``GET /history/`` as a WSGI application on the standard library alone.

``auditlog demo`` and ``auditlog serve`` run it; any WSGI server (gunicorn, uWSGI, waitress) can
too. Parsing, scoping and errors come from :mod:`auditlog.integrations.http`, so it answers
exactly as the FastAPI and Flask mounts do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .http import (
    COUNT_LIMIT,
    DEFAULT_MAX_PAGE_BYTES,
    Authenticate,
    HTTPError,
    authenticate_request,
    check_count_limit,
    history_page,
    page_body,
)
from .state import object_state
from .viewer import asset

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["make_wsgi_app"]

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 503: "Service Unavailable",
}  # fmt: skip
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], list[bytes]]


def make_wsgi_app(
    session_factory: Callable[[], Session],
    authenticate: Authenticate,
    *,
    path: str = "/history/",
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    count_limit: int | None = COUNT_LIMIT,
) -> WSGIApp:
    """A WSGI application serving ``GET path``, ``GET path/state/`` (with or without the final
    slash) and the viewer at ``path/view/``, and nothing else.

    A page of several entries whose JSON exceeds ``max_page_bytes`` is refused (400). ``count``
    is exact up to ``count_limit`` matching entries and the database's estimate past them (None:
    always exact, whatever it costs).
    """
    check_count_limit(count_limit)
    paths = {path, path.rstrip("/") or "/"}
    state = f"{path.rstrip('/')}/state/"
    states = {state, state.rstrip("/")}

    view = f"{path.rstrip('/')}/view"

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        headers = [("Content-Type", "application/json")]
        where = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD") and (where == view or where.startswith(view + "/")):
            return _viewer(where.removeprefix(view), method, path, start_response)
        try:
            if where not in paths and where not in states:
                raise HTTPError(404, "not_found", f"no such resource; use GET {path}")
            if method not in ("GET", "HEAD"):
                headers.append(("Allow", "GET, HEAD"))
                raise HTTPError(405, "method_not_allowed", f"use GET {path}")
            principal = authenticate_request(environ.get("HTTP_AUTHORIZATION"), authenticate)
            query = environ.get("QUERY_STRING", "")
            if where in states:
                body = object_state(session_factory, principal, query).model_dump_json().encode()
            else:
                page = history_page(session_factory, principal, query, count_limit=count_limit)
                body = page_body(page, max_page_bytes)
            status = 200
        except HTTPError as exc:
            status, body = exc.status, exc.json()
            headers.extend(exc.headers.items())
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS[status]}", headers)
        return [] if method == "HEAD" else [body]

    return app


def _viewer(rest: str, method: str, path: str, start_response: StartResponse) -> list[bytes]:
    """The viewer's files (``/view/`` is the page; ``/view`` moves there)."""
    if not rest:
        start_response("301 Moved Permanently", [("Location", "view/"), ("Content-Length", "0")])
        return []
    status, headers, body = asset(rest.removeprefix("/"), "bearer", path)
    start_response(
        f"{status} {_REASONS[status]}", [*headers.items(), ("Content-Length", str(len(body)))]
    )
    return [] if method == "HEAD" else [body]
