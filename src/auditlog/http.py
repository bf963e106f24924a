"""``GET /history/`` without a framework: authentication, query parameters, scoping, errors.

The FastAPI and Flask integrations and the stdlib WSGI app of :func:`make_wsgi_app` share this
core, so every mount answers the same request with the same status and the same JSON:

- the ``Authorization: Bearer <token>`` header goes through the app's ``authenticate`` callable,
  which returns a :class:`Principal` or ``None``; missing or rejected -> 401 with
  ``WWW-Authenticate: Bearer``;
- the raw query string is parsed strictly (:func:`parse_query`): unknown, repeated (except
  ``action_type``), malformed or out-of-range parameters -> 400 with a JSON body naming the
  parameter;
- the query always runs with ``tenant_id`` set to the principal's tenant (:func:`scoped_arguments`).

See docs/http.md for the behaviour in full.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from .exceptions import InvalidQueryError
from .models import ACTION_TYPES
from .query import MAX_PAGE_SIZE, HistoryQuery, query_history
from .schemas import HistoryPage

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "MAX_PAGE",
    "PARAMETERS",
    "TOKEN_PATTERN",
    "Authenticate",
    "ErrorBody",
    "HTTPError",
    "Principal",
    "authenticate_request",
    "empty_page",
    "history_page",
    "make_wsgi_app",
    "parse_query",
    "scoped_arguments",
    "token_authenticator",
]

#: The largest page number accepted: deeper offsets are refused rather than sent to the database.
MAX_PAGE = 2**31 - 1
_MAX_ID = 2**31 - 1  # content type ids are 32-bit integers on every backend

#: RFC 6750 ``b64token``: anything else is refused before the app's callable sees it.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
_DATETIME: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)
_UTC_MIN = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_UTC_MAX = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
_log = logging.getLogger("auditlog.http")


@dataclass(frozen=True)
class Principal:
    """Who is calling: every result is limited to ``tenant_id``; ``user_id`` is informative."""

    tenant_id: str
    user_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not self.tenant_id:
            raise ValueError("Principal.tenant_id must be a non-empty string")


#: Maps a bearer token to its principal, or ``None`` when the token is not valid.
Authenticate = Callable[[str], "Principal | None"]


def token_authenticator(tokens: Mapping[str, str | Principal]) -> Authenticate:
    """An ``authenticate`` callable for a fixed table of tokens (token -> tenant id or principal).

    Tokens are compared in constant time.
    """
    table = [
        (token.encode(), p if isinstance(p, Principal) else Principal(tenant_id=p))
        for token, p in tokens.items()
    ]

    def authenticate(token: str) -> Principal | None:
        given = token.encode()
        found = None
        for known, principal in table:
            if hmac.compare_digest(known, given):
                found = principal
        return found

    return authenticate


class ErrorBody(BaseModel):
    """The JSON body of every 4xx/5xx answer of the endpoint."""

    error: str = Field(description="A stable code: not_authenticated, invalid_parameter, ...")
    detail: str = Field(description="What went wrong, for people.")
    parameter: str | None = Field(default=None, description="The query parameter at fault.")


class HTTPError(Exception):
    """An answer other than 200: ``status``, a JSON ``body`` and extra ``headers``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        parameter: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.body = ErrorBody(error=error, detail=detail, parameter=parameter)
        self.headers = dict(headers or {})

    @classmethod
    def bad_parameter(cls, parameter: str, detail: str) -> HTTPError:
        return cls(400, "invalid_parameter", f"{parameter}: {detail}", parameter=parameter)

    @classmethod
    def unauthorized(cls, detail: str) -> HTTPError:
        return cls(401, "not_authenticated", detail, headers={"WWW-Authenticate": "Bearer"})

    @classmethod
    def unavailable(cls, cause: BaseException) -> HTTPError:
        """503 for a database failure; the cause is logged, never shown to the client."""
        _log.error("GET /history/: the audit log cannot be read: %s", cause, exc_info=cause)
        return cls(503, "unavailable", "the audit log cannot be read right now")

    def json(self) -> bytes:
        return self.body.model_dump_json(exclude_none=True).encode()


# --- authentication -----------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when absent or malformed."""
    if not authorization or not authorization.strip():
        raise HTTPError.unauthorized("missing bearer token in the Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPError.unauthorized("the Authorization header must be 'Bearer <token>'")
    if not TOKEN_PATTERN.fullmatch(token):
        raise HTTPError.unauthorized("invalid bearer token")
    return token


def check_principal(principal: object) -> Principal:
    """The principal an ``authenticate`` callable returned; 401 for ``None``."""
    if principal is None:
        raise HTTPError.unauthorized("invalid bearer token")
    if not isinstance(principal, Principal):
        raise TypeError(f"authenticate must return a Principal or None, not {principal!r}")
    return principal


def authenticate_request(authorization: str | None, authenticate: Authenticate) -> Principal:
    """Authenticate the ``Authorization`` header value with the app's callable; 401 otherwise."""
    return check_principal(authenticate(bearer_token(authorization)))


# --- query parameters ---------------------------------------------------------------------------

_INT = {"type": "integer"}
_TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
_DATE_TIME = {"type": "string", "format": "date-time"}

#: The query parameters: name -> (JSON schema, description), in OpenAPI order.
PARAMETERS: dict[str, tuple[dict[str, Any], str]] = {
    "user_id": (_TEXT, "Only entries by this user."),
    "ip_address": (
        {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
        "Only entries from this IPv4 or IPv6 address.",
    ),
    "action_type": (
        {"type": "array", "items": {"type": "string", "enum": list(ACTION_TYPES)}},
        "Only these actions: one value, repeated, or comma-separated (`create,update`).",
    ),
    "object_id": (_TEXT, "Only entries about the object with this primary key."),
    "content_type": (
        {**_INT, "minimum": 0, "maximum": _MAX_ID},
        "Only entries about objects of this model (its `content_type` id).",
    ),
    "since": (_DATE_TIME, "Only entries at or after this time (ISO 8601; UTC when naive)."),
    "until": (_DATE_TIME, "Only entries before this time (ISO 8601; UTC when naive)."),
    "page": ({**_INT, "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "Page number, from 1."),
    "page_size": (
        {**_INT, "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20},
        f"Entries per page, 1 to {MAX_PAGE_SIZE}.",
    ),
    "tenant_id": (
        _TEXT,
        "Ignored for scoping: results are always those of the caller's tenant, so another "
        "tenant's id gives an empty page.",
    ),
}


def _integer(name: str, value: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(value) or len(value) > 12:
        raise HTTPError.bad_parameter(name, f"expected a whole number from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise HTTPError.bad_parameter(name, f"must be from {low} to {high} (got {number})")
    return number


def _datetime(name: str, value: str) -> dt.datetime:
    if _NUMBER.fullmatch(value.strip()):  # pydantic would read a number as a Unix time
        raise HTTPError.bad_parameter(name, "expected an ISO 8601 date-time, not a number")
    try:
        moment = _DATETIME.validate_python(value)
    except ValidationError:
        raise HTTPError.bad_parameter(name, "expected an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:  # beyond year 1 or 9999 once in UTC: the nearest representable bound
        return _UTC_MIN if moment.year == 1 else _UTC_MAX


def _decode(query_string: bytes | str) -> list[tuple[str, str]]:
    # Percent-decode byte for byte (latin-1), then decode UTF-8 strictly: no silent U+FFFD.
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    decoded = []
    for key, value in parse_qsl(text, keep_blank_values=True, encoding="latin-1"):
        try:
            name = key.encode("latin-1").decode()
        except (UnicodeError, ValueError):
            raise HTTPError.bad_parameter("query", "parameter names must be UTF-8") from None
        try:
            decoded.append((name, value.encode("latin-1").decode()))
        except (UnicodeError, ValueError):
            raise HTTPError.bad_parameter(name, "the value is not valid UTF-8") from None
    return decoded


def parse_query(query_string: bytes | str) -> dict[str, Any]:
    """The ``query_history`` arguments of a raw query string (bytes, or WSGI's latin-1 text).

    Empty values count as absent. Raises :class:`HTTPError` (400) naming the bad parameter.
    """
    given: dict[str, list[str]] = {}
    for name, value in _decode(query_string):
        if name not in PARAMETERS:
            known = ", ".join(PARAMETERS)
            raise HTTPError.bad_parameter(name, f"unknown query parameter; use {known}")
        if "\x00" in value:
            raise HTTPError.bad_parameter(name, "must not contain NUL characters")
        given.setdefault(name, []).append(value)
    arguments: dict[str, Any] = {}
    for name, values in given.items():
        present = [v for v in values if v.strip()]
        if not present:
            continue
        if name == "action_type":
            arguments[name] = ",".join(present)
            continue
        if len(present) > 1:
            raise HTTPError.bad_parameter(name, "given more than once")
        value = present[0].strip()
        if name == "page":
            arguments[name] = _integer(name, value, 1, MAX_PAGE)
        elif name == "page_size":
            arguments[name] = _integer(name, value, 1, MAX_PAGE_SIZE)
        elif name == "content_type":
            arguments[name] = _integer(name, value, 0, _MAX_ID)
        elif name in ("since", "until"):
            arguments[name] = _datetime(name, value)
        else:
            arguments[name] = value
    return arguments


def scoped_arguments(principal: Principal, arguments: Mapping[str, Any]) -> dict[str, Any] | None:
    """Validated ``query_history`` arguments limited to the principal's tenant.

    Returns ``None`` when nothing can match: the query names another tenant (the answer is an
    empty page, never that tenant's entries), or ``until`` is not after ``since``. Raises
    :class:`HTTPError` (400) for an argument ``query_history`` would refuse.
    """
    requested = arguments.get("tenant_id")
    scoped = {**arguments, "tenant_id": principal.tenant_id}
    since, until = scoped.get("since"), scoped.get("until")
    empty_window = since is not None and until is not None and until <= since
    if empty_window:
        del scoped["until"]
    try:
        HistoryQuery.parse(**scoped)
    except InvalidQueryError as exc:
        raise HTTPError.bad_parameter(exc.argument, exc.message) from None
    if empty_window or (requested is not None and requested != principal.tenant_id):
        return None
    return scoped


def empty_page(page: int = 1) -> HistoryPage:
    """The page of a query nothing can match."""
    return HistoryPage(
        count=0,
        total_pages=1,
        current_page=page,
        has_previous=page > 1,
        has_next=False,
        previous_page=page - 1 if page > 1 else None,
        next_page=None,
        results=[],
    )


def history_page(
    session_factory: Callable[[], Session], principal: Principal, query_string: bytes | str
) -> HistoryPage:
    """Parse, scope and run one request's query on a new session (sync mounts).

    Raises :class:`HTTPError`: 400 for a bad parameter, 503 when the database fails.
    """
    arguments = parse_query(query_string)
    scoped = scoped_arguments(principal, arguments)
    if scoped is None:
        return empty_page(arguments.get("page", 1))
    try:
        with session_factory() as session:
            return query_history(session, **scoped)
    except SQLAlchemyError as exc:
        raise HTTPError.unavailable(exc) from None


# --- a stdlib WSGI app --------------------------------------------------------------------------

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
) -> WSGIApp:
    """A WSGI application serving ``GET path`` (with or without the final slash) and nothing else.

    Built on the standard library only; ``auditlog demo`` and ``auditlog serve`` run it.
    """
    paths = {path, path.rstrip("/") or "/"}

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        headers = [("Content-Type", "application/json")]
        try:
            if environ.get("PATH_INFO", "") not in paths:
                raise HTTPError(404, "not_found", f"no such resource; use GET {path}")
            if method not in ("GET", "HEAD"):
                headers.append(("Allow", "GET, HEAD"))
                raise HTTPError(405, "method_not_allowed", f"use GET {path}")
            principal = authenticate_request(environ.get("HTTP_AUTHORIZATION"), authenticate)
            page = history_page(session_factory, principal, environ.get("QUERY_STRING", ""))
            status, body = 200, page.model_dump_json().encode()
        except HTTPError as exc:
            status, body = exc.status, exc.json()
            headers.extend(exc.headers.items())
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS[status]}", headers)
        return [] if method == "HEAD" else [body]

    return app
