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
    COUNT_LIMIT,
    DEFAULT_MAX_PAGE_BYTES,
    Authenticate,
    HTTPError,
    Principal,
    as_principal,
    authenticate_request,
    check_count_limit,
    history_page,
    page_body,
)
from .state import object_state
from .viewer import Auth, asset

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["history_blueprint"]


def history_blueprint(
    session_factory: Callable[[], Session],
    *,
    authenticate: Authenticate | None = None,
    caller: Callable[[], object] | None = None,
    path: str = "/history/",
    name: str = "auditlog_history",
    url_prefix: str | None = None,
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    count_limit: int | None = COUNT_LIMIT,
) -> Blueprint:
    """A blueprint serving ``GET path`` (one page of the caller's tenant's audit entries) and
    ``GET path/state/`` (one object's recorded state).

    ``session_factory`` returns a new ``Session`` (a ``sessionmaker`` or a ``scoped_session``
    registry); it is closed after the request. Who is calling comes from exactly one of
    ``authenticate``, which maps a bearer token to a
    :class:`~auditlog.integrations.http.Principal` or ``None``, and ``caller``, a callable that
    reads the signed-in caller the application's way (``flask.g``, Flask-Login's
    ``current_user``) and returns a ``Principal``, an object with ``tenant_id`` and ``user_id``
    attributes, or ``None`` for nobody. A page of several entries whose JSON exceeds
    ``max_page_bytes`` is refused (400). ``count`` is exact up to ``count_limit`` matching
    entries and the database's estimate past them (None: always exact, whatever it costs).
    """
    check_count_limit(count_limit)
    if (authenticate is None) == (caller is None):
        raise TypeError("history_blueprint() takes exactly one of authenticate, caller")
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    def identify() -> Principal:
        if caller is not None:
            return as_principal(caller())
        assert authenticate is not None
        return authenticate_request(request.headers.get("Authorization"), authenticate)

    def answer(body: Callable[[Principal], bytes]) -> Response:
        try:
            data = body(identify())
        except HTTPError as exc:
            return Response(
                exc.json(), status=exc.status, headers=exc.headers, mimetype="application/json"
            )
        return Response(data, mimetype="application/json")

    @blueprint.get(f"{path.rstrip('/')}/state/")
    def object_state_view() -> Response:
        return answer(
            lambda who: (
                object_state(session_factory, who, request.query_string).model_dump_json().encode()
            )
        )

    viewer_auth: Auth = "bearer" if authenticate is not None else "session"

    @blueprint.get(f"{path.rstrip('/')}/view")
    def viewer_root() -> Response:
        # relative: right under any url_prefix
        return Response(status=301, headers={"Location": "view/"})

    @blueprint.get(f"{path.rstrip('/')}/view/", defaults={"name": ""})
    @blueprint.get(f"{path.rstrip('/')}/view/<path:name>")
    def viewer(name: str) -> Response:
        status, headers, body = asset(name, viewer_auth, path)
        return Response(body, status=status, headers=headers)

    @blueprint.get(path)
    def history() -> Response:
        return answer(
            lambda who: page_body(
                history_page(session_factory, who, request.query_string, count_limit=count_limit),
                max_page_bytes,
            )
        )

    return blueprint
