"""``GET /history/`` and ``GET /history/state/`` for FastAPI (and, through :func:`history_app`,
any Starlette app).

    app.include_router(history_router(SessionLocal, authenticate=lookup_token))

The route documents the page (``response_model=HistoryPage``, with an example), every query
parameter, the bearer security scheme and the 400/401/503 error bodies. Parsing, scoping and
errors come from :mod:`auditlog.integrations.http`, so the JSON is the same as in the Flask
blueprint.
Sync sessions run in the threadpool; an ``AsyncSession`` is awaited.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

try:
    from fastapi import APIRouter, Depends, FastAPI, Request, Security
    from fastapi.responses import JSONResponse, RedirectResponse, Response
    from fastapi.security import HTTPBearer
    from starlette.concurrency import run_in_threadpool
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'auditlog.integrations.fastapi needs FastAPI: pip install "sqlalchemy-auditlog[fastapi]"'
    ) from exc
from sqlalchemy.orm import Session

from .._asyncio import AsyncSession
from ..query import CursorPage, HistoryPage
from .http import (
    COUNT_LIMIT,
    DEFAULT_MAX_PAGE_BYTES,
    ErrorBody,
    HTTPError,
    Principal,
    answering,
    as_principal,
    bearer_token,
    check_count_limit,
    check_principal,
    empty_page,
    openapi_parameters,
    page_body,
    parse_query,
    run_query,
    scoped_query,
)
from .state import STATE_PARAMETERS, ObjectState, parse_state_query, run_state_query
from .viewer import Auth, asset

__all__ = ["history_app", "history_router"]

#: ``authenticate`` may also be a coroutine function here.
AnyAuthenticate = Callable[[str], Any]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "A query parameter is invalid, or the page is too large for "
        "`page_size`; `parameter` names it.",
    },
    401: {
        "model": ErrorBody,
        "description": "Missing or invalid bearer token.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    },
    503: {"model": ErrorBody, "description": "The audit log cannot be read (database error)."},
}


def _no_session() -> None:
    return None


async def _principal(authenticate: AnyAuthenticate, authorization: str | None) -> Principal:
    token = bearer_token(authorization)
    if inspect.iscoroutinefunction(authenticate) or inspect.iscoroutinefunction(
        getattr(authenticate, "__call__", None)  # noqa: B004 - an object with ``async __call__``
    ):
        return check_principal(await authenticate(token))
    found = await run_in_threadpool(authenticate, token)
    if inspect.isawaitable(found):  # a plain callable that returns a coroutine (a lambda)
        found = await found
    return check_principal(found)


T = TypeVar("T")


async def _run(session: Session | AsyncSession, own: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(sync_session, *args)`` on the request's session: awaited for an ``AsyncSession``,
    in the threadpool otherwise; a session of our own is closed afterwards."""
    if isinstance(session, AsyncSession):
        if not own:
            return await session.run_sync(fn, *args)
        async with session:
            return await session.run_sync(fn, *args)
    if not own:
        return await run_in_threadpool(fn, session, *args)

    def closing() -> T:
        with session:
            return fn(session, *args)

    return await run_in_threadpool(closing)


def _error(exc: HTTPError) -> JSONResponse:
    return JSONResponse(
        exc.body.model_dump(exclude_none=True), status_code=exc.status, headers=exc.headers
    )


def history_router(
    session_factory: Callable[[], Session | AsyncSession] | None = None,
    *,
    authenticate: AnyAuthenticate | None = None,
    caller: Callable[..., Any] | None = None,
    session_dependency: Callable[..., Any] | None = None,
    path: str = "/history/",
    tags: Sequence[str] = ("audit",),
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    count_limit: int | None = COUNT_LIMIT,
    **router_options: Any,
) -> APIRouter:
    """An ``APIRouter`` serving ``GET path``: one page of the caller's tenant's audit entries.

    Give exactly one of ``session_factory`` (a ``sessionmaker``, an ``async_sessionmaker``, or any
    callable returning a new ``Session``/``AsyncSession``; closed after the request) and
    ``session_dependency`` (a FastAPI dependency yielding the app's own session).
    Who is calling comes from exactly one of ``authenticate``, which maps a bearer token to a
    :class:`~auditlog.integrations.http.Principal` or ``None`` (it may be a coroutine
    function), and ``caller``, the application's own FastAPI dependency that returns the signed-in
    caller (a ``Principal``, or an object with ``tenant_id`` and ``user_id`` attributes, or
    ``None`` for nobody), so that an app reuses its ``Depends(current_user)``. A page of several entries whose JSON exceeds
    ``max_page_bytes`` is refused (400). ``count`` is exact up to ``count_limit`` matching
    entries and the database's estimate past them (None: always exact, whatever it costs).
    ``router_options`` go to ``APIRouter``.
    """
    check_count_limit(count_limit)
    if (session_factory is None) == (session_dependency is None):
        raise TypeError("history_router() takes exactly one of session_factory, session_dependency")
    if (authenticate is None) == (caller is None):
        raise TypeError("history_router() takes exactly one of authenticate, caller")
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="auditlogBearer",
        description="A token the application maps to a tenant (and user).",
    )
    router = APIRouter(**router_options)
    security = [Security(bearer)] if authenticate is not None else []

    async def identify(request: Request, who: Any) -> Principal:
        if authenticate is None:
            return as_principal(who)
        return await _principal(authenticate, request.headers.get("authorization"))

    @router.get(
        path,
        response_model=HistoryPage | CursorPage,
        responses=_ERRORS,
        tags=list(tags),
        summary="History",
        description="Audit entries of the caller's tenant, newest first, one page at a time.",
        openapi_extra={"parameters": openapi_parameters()},
        dependencies=security,
    )
    async def history(
        request: Request,
        session: Any = Depends(session_dependency or _no_session),  # noqa: B008
        who: Any = Depends(caller or _no_session),  # noqa: B008
    ) -> Any:
        try:
            principal = await identify(request, who)
            query = parse_query(request.scope.get("query_string", b""), count_limit=count_limit)
            scoped = scoped_query(principal, query)
            page = empty_page(query)
            with answering():
                if scoped is not None and session_factory is not None:
                    page = await _run(session_factory(), True, run_query, scoped)
                elif scoped is not None:
                    page = await _run(session, False, run_query, scoped)
            return Response(page_body(page, max_page_bytes), media_type="application/json")
        except HTTPError as exc:
            return _error(exc)

    @router.get(
        f"{path.rstrip('/')}/state/",
        response_model=ObjectState,
        responses=_ERRORS,
        tags=list(tags),
        summary="Object state",
        description="One object's recorded state at a moment (now by default), from the "
        "caller's tenant's entries.",
        openapi_extra={"parameters": _state_parameters()},
        dependencies=security,
    )
    async def object_state(
        request: Request,
        session: Any = Depends(session_dependency or _no_session),  # noqa: B008
        who: Any = Depends(caller or _no_session),  # noqa: B008
    ) -> Any:
        try:
            principal = await identify(request, who)
            query = parse_state_query(request.scope.get("query_string", b""))
            with answering():
                if session_factory is not None:
                    return await _run(session_factory(), True, run_state_query, principal, query)
                return await _run(session, False, run_state_query, principal, query)
        except HTTPError as exc:
            return _error(exc)

    for route_path, endpoint in ((path, history), (f"{path.rstrip('/')}/state/", object_state)):
        # HEAD as on the other mounts (FastAPI adds it to no GET route); not in the schema
        router.add_api_route(
            route_path, endpoint, methods=["HEAD"], include_in_schema=False, dependencies=security
        )

    viewer_auth: Auth = "bearer" if authenticate is not None else "session"
    base = path.rstrip("/")

    @router.api_route(f"{base}/view", methods=["GET", "HEAD"], include_in_schema=False)
    async def viewer_root() -> Response:
        return RedirectResponse("view/")  # relative: right under any mount prefix

    @router.api_route(
        f"{base}/view/{{name:path}}", methods=["GET", "HEAD"], include_in_schema=False
    )
    async def viewer(name: str) -> Response:
        status, headers, body = asset(name, viewer_auth, path)
        return Response(body, status_code=status, headers=headers)

    return router


def _state_parameters() -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": required, "schema": schema, "description": text}
        for name, (schema, text, required) in STATE_PARAMETERS.items()
    ]


def history_app(
    session_factory: Callable[[], Session | AsyncSession] | None = None,
    *,
    authenticate: AnyAuthenticate | None = None,
    caller: Callable[..., Any] | None = None,
    session_dependency: Callable[..., Any] | None = None,
    path: str = "/history/",
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    count_limit: int | None = COUNT_LIMIT,
    **app_options: Any,
) -> FastAPI:
    """A small FastAPI app holding only :func:`history_router`, to mount in a Starlette app.

    Starlette(routes=[Mount("/audit", app=history_app(SessionLocal, authenticate=...))])
    """
    app_options.setdefault("title", "auditlog")
    app = FastAPI(**app_options)
    app.include_router(
        history_router(
            session_factory,
            authenticate=authenticate,
            caller=caller,
            session_dependency=session_dependency,
            path=path,
            max_page_bytes=max_page_bytes,
            count_limit=count_limit,
        )
    )
    return app
