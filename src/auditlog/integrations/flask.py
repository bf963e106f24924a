"""``GET /history/`` and ``GET /history/state/`` as a Flask blueprint.

    app.register_blueprint(history_blueprint(SessionLocal, authenticate=lookup_token))

Parsing, scoping and errors come from :mod:`auditlog.integrations.http`: the JSON is the same as the FastAPI
router's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

try:
    from flask import Blueprint, Response, request
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'auditlog.integrations.flask needs Flask: pip install "sqlalchemy-auditlog[flask]"'
    ) from exc

from .http import (
    DEFAULT_MAX_PAGE_BYTES,
    Authenticate,
    HTTPError,
    authenticate_request,
    history_page,
    page_body,
)
from .state import object_state

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["history_blueprint"]


def history_blueprint(
    session_factory: Callable[[], Session],
    *,
    authenticate: Authenticate,
    path: str = "/history/",
    name: str = "auditlog_history",
    url_prefix: str | None = None,
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
) -> Blueprint:
    """A blueprint serving ``GET path``: one page of the caller's tenant's audit entries.

    ``session_factory`` returns a new ``Session`` (a ``sessionmaker`` or a ``scoped_session``
    registry); it is closed after the request. ``authenticate`` maps a bearer token to a
    :class:`~auditlog.integrations.http.Principal` or ``None``. A page of several entries whose
    JSON exceeds ``max_page_bytes`` is refused (400).
    """
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.get(f"{path.rstrip('/')}/state/")
    def object_state_view() -> Response:
        try:
            principal = authenticate_request(request.headers.get("Authorization"), authenticate)
            found = object_state(session_factory, principal, request.query_string)
        except HTTPError as exc:
            return Response(
                exc.json(), status=exc.status, headers=exc.headers, mimetype="application/json"
            )
        return Response(found.model_dump_json(), mimetype="application/json")

    @blueprint.get(path)
    def history() -> Response:
        try:
            principal = authenticate_request(request.headers.get("Authorization"), authenticate)
            page = history_page(session_factory, principal, request.query_string)
            body = page_body(page, max_page_bytes)
        except HTTPError as exc:
            return Response(
                exc.json(), status=exc.status, headers=exc.headers, mimetype="application/json"
            )
        return Response(body, mimetype="application/json")

    return blueprint
