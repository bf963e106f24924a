"""``GET /history/`` without a framework: authentication, query parameters, scoping, errors.

The FastAPI and Flask integrations and the standard-library WSGI app of
:func:`auditlog.integrations.server.make_wsgi_app` share this core, so every mount answers the
same request with the same status and the same JSON:

- the ``Authorization: Bearer <token>`` header goes through the app's ``authenticate`` callable,
  which returns a :class:`Principal` or ``None``; missing or rejected -> 401 with
  ``WWW-Authenticate: Bearer``;
- the raw query string is parsed strictly and validated once (:func:`parse_query`, giving a
  :class:`~auditlog.query.HistoryQuery`): unknown, repeated (except ``action_type``), malformed
  or out-of-range parameters -> 400 with a JSON body naming the parameter;
- the query always runs with ``tenant_id`` set to the principal's tenant (:func:`scoped_query`).

See docs/http.md for the behaviour in full.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import InvalidQueryError
from ..models import MAX_ID, utc_bound
from ..query import (
    MAX_PAGE_SIZE,
    CursorPage,
    CursorQuery,
    HistoryFilters,
    HistoryPage,
    HistoryQuery,
)
from ..query.counts import COUNT_LIMIT
from ..query.pages import cursor_page, numbered_page

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "COUNT_LIMIT",
    "DEFAULT_MAX_PAGE_BYTES",
    "DIGITS",
    "PARAMETERS",
    "TOKEN_PATTERN",
    "Authenticate",
    "ErrorBody",
    "HTTPError",
    "Principal",
    "as_principal",
    "authenticate_request",
    "bearer_token",
    "check_count_limit",
    "check_principal",
    "decode_query",
    "empty_page",
    "history_page",
    "openapi_parameters",
    "page_body",
    "parse_datetime",
    "parse_integer",
    "parse_query",
    "run_query",
    "scoped_query",
    "token_authenticator",
]

#: RFC 6750 ``b64token``: anything else is refused before the app's callable sees it.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: A whole number's ASCII digits (``str.isdecimal`` also takes other scripts' digits).
DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
_DATETIME: TypeAdapter[dt.datetime] = TypeAdapter(dt.datetime)
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


@contextmanager
def answering() -> Iterator[None]:
    """What a request's work raises, as the answer to give: a parameter the query layer refuses
    (an unknown model's name, an entry id nobody has) is a 400 naming it, a database failure a
    503. Every mount runs its queries in it."""
    try:
        yield
    except InvalidQueryError as exc:
        raise HTTPError.bad_parameter(exc.argument, exc.message) from None
    except SQLAlchemyError as exc:
        raise HTTPError.unavailable(exc) from None


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


def as_principal(caller: object) -> Principal:
    """The principal of the application's own idea of the caller: a :class:`Principal`, or any
    object with a ``tenant_id`` (and optionally ``user_id``) attribute, such as the user an
    app's sign-in dependency returns; 401 for ``None`` or a caller without a tenant."""
    if isinstance(caller, Principal):
        return caller
    tenant = getattr(caller, "tenant_id", None) if caller is not None else None
    if tenant is None or tenant == "":
        raise HTTPError.unauthorized("not signed in")
    user = getattr(caller, "user_id", None)
    return Principal(tenant_id=str(tenant), user_id=None if user is None else str(user))


def authenticate_request(authorization: str | None, authenticate: Authenticate) -> Principal:
    """Authenticate the ``Authorization`` header value with the app's callable; 401 otherwise."""
    return check_principal(authenticate(bearer_token(authorization)))


# --- query parameters ---------------------------------------------------------------------------

#: The query parameters, in the order the OpenAPI document lists them: the filters, paging, and
#: ``tenant_id`` last (it never widens the scope).
#: The endpoint's query parameters: ``count_limit`` is the mount's setting, never a client's (an
#: exact count of a big tenant costs the database what the limit exists to spare it).
PARAMETERS: tuple[str, ...] = (
    *(name for name in HistoryQuery.model_fields if name not in ("tenant_id", "count_limit")),
    "cursor",
    "tenant_id",
)
#: What the endpoint says of a parameter where the library call's description does not fit.
_HTTP_DESCRIPTIONS = {
    "tenant_id": "Ignored for scoping: results are always those of the caller's tenant, so "
    "another tenant's id gives an empty page.",
}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema as a query parameter's: the ``null`` alternative dropped (an
    absent parameter is the null), and its keywords kept on what remains."""
    options = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
    if len(options) != 1:
        return schema
    outer = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**options[0], **outer}


def openapi_parameters() -> list[dict[str, Any]]:
    """The OpenAPI description of every query parameter, from :class:`HistoryQuery`'s schema."""
    properties = {
        **CursorQuery.model_json_schema()["properties"],
        **HistoryQuery.model_json_schema()["properties"],
    }
    parameters = []
    for name in PARAMETERS:
        schema = _without_null(properties[name])
        schema.pop("title", None)
        description = _HTTP_DESCRIPTIONS.get(name) or schema.pop("description")
        schema.pop("description", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }
        if name == "action_type":
            parameter.update(style="form", explode=True, example=["create"])
        parameters.append(parameter)
    return parameters


def parse_integer(name: str, value: str, low: int, high: int) -> int:
    """A query parameter's whole number (ASCII digits, within bounds); 400 naming ``name``."""
    if not DIGITS.fullmatch(value) or len(value) > 12:
        raise HTTPError.bad_parameter(name, f"expected a whole number from {low} to {high}")
    number = int(value)
    if not low <= number <= high:
        raise HTTPError.bad_parameter(name, f"must be from {low} to {high} (got {number})")
    return number


def parse_datetime(name: str, value: str) -> dt.datetime:
    """A query parameter's ISO 8601 time, in UTC (naive: UTC); 400 naming ``name``."""
    if _NUMBER.fullmatch(value.strip()):  # pydantic would read a number as a Unix time
        raise HTTPError.bad_parameter(name, "expected an ISO 8601 date-time, not a number")
    try:
        moment = _DATETIME.validate_python(value)
    except ValidationError:
        raise HTTPError.bad_parameter(name, "expected an ISO 8601 date-time") from None
    return utc_bound(moment)


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


#: Parameters read as whole numbers in the query string, and their bounds.
_INTEGERS = {"page": (1, MAX_ID), "page_size": (1, MAX_PAGE_SIZE)}


#: Ids are matched exactly as stored, white space included: never trimmed.
VERBATIM = frozenset({"user_id", "object_id", "tenant_id"})


def decode_query(
    query_string: bytes | str, known: Iterable[str], *, repeatable: Set[str] = frozenset()
) -> dict[str, str]:
    """The parameters of a raw query string (bytes, or WSGI's latin-1 text), each once: empty
    values count as absent, values other than ids (:data:`VERBATIM`) lose surrounding white
    space, and a ``repeatable`` one given several times is joined with commas.
    Raises :class:`HTTPError` (400) for an unknown, repeated or NUL-holding parameter."""
    names = list(known)
    given: dict[str, list[str]] = {}
    for name, value in _decode(query_string):
        if name not in names:
            raise HTTPError.bad_parameter(name, f"unknown query parameter; use {', '.join(names)}")
        if "\x00" in value:
            raise HTTPError.bad_parameter(name, "must not contain NUL characters")
        given.setdefault(name, []).append(value)
    decoded: dict[str, str] = {}
    for name, values in given.items():
        kept = values if name in VERBATIM else [v.strip() for v in values]
        present = [v for v in kept if v]
        if len(present) > 1 and name not in repeatable:
            raise HTTPError.bad_parameter(name, "given more than once")
        if present:
            decoded[name] = ",".join(present)
    return decoded


def parse_query(
    query_string: bytes | str, *, count_limit: int | None = COUNT_LIMIT
) -> HistoryQuery | CursorQuery:
    """The validated query of a raw query string (bytes, or WSGI's latin-1 text): numbered
    pages, or keyset pages when it gives a ``cursor``. ``count_limit`` is the mount's, never the
    client's (see :func:`~auditlog.query_history`).

    Empty values count as absent. Raises :class:`HTTPError` (400) naming the bad parameter.
    """
    arguments: dict[str, Any] = {}
    for name, value in decode_query(query_string, PARAMETERS, repeatable={"action_type"}).items():
        if name in _INTEGERS:
            arguments[name] = parse_integer(name, value, *_INTEGERS[name])
        elif name == "content_type" and DIGITS.fullmatch(value):  # else a model's name
            arguments[name] = parse_integer(name, value, 0, MAX_ID)
        elif name in ("since", "until"):
            arguments[name] = parse_datetime(name, value)
        else:
            arguments[name] = value
    if "cursor" in arguments and "page" in arguments:
        raise HTTPError.bad_parameter("page", "a page number and a cursor exclude each other")
    kind: type[HistoryQuery] | type[CursorQuery] = (
        CursorQuery if "cursor" in arguments else HistoryQuery
    )
    if kind is HistoryQuery:
        arguments["count_limit"] = count_limit
    with answering():
        return kind.parse(**arguments)


Query = TypeVar("Query", bound=HistoryFilters)


def scoped_query(principal: Principal, query: Query) -> Query | None:
    """``query`` limited to the principal's tenant.

    Returns ``None`` when nothing can match: the query names another tenant (the answer is an
    empty page, never that tenant's entries), or ``until`` is not after ``since``.
    """
    if query.tenant_id is not None and query.tenant_id != principal.tenant_id:
        return None
    if query.since is not None and query.until is not None and query.until <= query.since:
        return None
    return query.model_copy(update={"tenant_id": principal.tenant_id})


#: The largest JSON body of a page of more than one entry (16 MiB): a larger one is refused.
DEFAULT_MAX_PAGE_BYTES = 16 * 2**20


def check_count_limit(count_limit: object) -> None:
    """A mount's ``count_limit``: a number of entries of 0 or more, or None (always exact)."""
    if count_limit is not None and (
        not isinstance(count_limit, int) or isinstance(count_limit, bool) or count_limit < 0
    ):
        raise ValueError(
            f"count_limit must be a number of entries of 0 or more, or None, not {count_limit!r}"
        )


def page_body(page: HistoryPage | CursorPage, max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> bytes:
    """The JSON body of ``page``. A page of several entries larger than ``max_bytes`` is a 400
    naming ``page_size`` and the size that fits; a page of one entry is always served."""
    body = page.model_dump_json().encode()
    if len(body) <= max_bytes or len(page.results) <= 1:
        return body
    sizes = [len(entry.model_dump_json().encode()) + 1 for entry in page.results]
    used, fit = len(body) - sum(sizes), 0
    for size in sizes:
        used += size
        if used > max_bytes:
            break
        fit += 1
    raise HTTPError(
        400,
        "page_too_large",
        f"page_size: the page is {len(body):,} bytes, above the limit of {max_bytes:,}; "
        f"ask for page_size={max(fit, 1)}",
        parameter="page_size",
    )


def empty_page(query: HistoryQuery | CursorQuery | int = 1) -> HistoryPage | CursorPage:
    """The page of a query nothing can match (numbered, or keyset for a cursor query)."""
    if isinstance(query, CursorQuery):
        return CursorPage(
            has_next=False, has_previous=False, next_cursor=None, previous_cursor=None, results=[]
        )
    return HistoryPage.numbered(0, query if isinstance(query, int) else query.page, 1, [])


def run_query(session: Session, query: HistoryQuery | CursorQuery) -> HistoryPage | CursorPage:
    """One page of ``query``: numbered, or keyset for a cursor query."""
    if isinstance(query, CursorQuery):
        return cursor_page(session, query)
    return numbered_page(session, query)


def history_page(
    session_factory: Callable[[], Session],
    principal: Principal,
    query_string: bytes | str,
    *,
    count_limit: int | None = COUNT_LIMIT,
) -> HistoryPage | CursorPage:
    """Parse, scope and run one request's query on a new session (sync mounts).

    Raises :class:`HTTPError`: 400 for a bad parameter, 503 when the database fails.
    """
    query = parse_query(query_string, count_limit=count_limit)
    scoped = scoped_query(principal, query)
    if scoped is None:
        return empty_page(query)
    with answering(), session_factory() as session:
        return run_query(session, scoped)
