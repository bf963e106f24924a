"""GET /history/ in real FastAPI and Starlette apps, over httpx and schemathesis, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.routing import Mount

from auditlog.integrations.fastapi import history_app, history_router
from auditlog.integrations.http import Principal, token_authenticator

from ..helpers import (
    AUTH_A,
    AUTH_B,
    TENANT_A,
    TENANT_B,
    TOKENS,
    assert_history_page,
    object_state_cases,
    seed_history,
)

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mariadb": "asyncmy"}


def make_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="lending")
    app.include_router(
        history_router(sessionmaker(engine), authenticate=token_authenticator(TOKENS))
    )
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    seed_history(engine)
    async with client_for(make_app(engine)) as client:
        yield client


async def test_serves_the_history_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/history/?action_type=create", headers=AUTH_A)
    assert response.status_code == 200
    body = response.json()
    assert_history_page(body)
    assert body["count"] == 3
    assert {e["user_id"] for e in body["results"]} == {"alice"}
    assert {e["ip_address"] for e in body["results"]} == {"10.0.0.1"}
    assert {e["user_agent"] for e in body["results"]} == {"pytest/1"}
    assert sorted(e["after_state"]["name"] for e in body["results"]) == [
        "customer 1",
        "customer 2",
        "customer 3",
    ]


async def test_scopes_every_answer_to_the_tokens_tenant(client: httpx.AsyncClient) -> None:
    a = (await client.get("/history/", headers=AUTH_A)).json()
    b = (await client.get("/history/", headers=AUTH_B)).json()
    assert (a["count"], b["count"]) == (5, 2)
    assert {e["tenant_id"] for e in a["results"]} == {TENANT_A}
    assert {e["tenant_id"] for e in b["results"]} == {TENANT_B}
    sneaky = await client.get("/history/", params={"tenant_id": TENANT_B}, headers=AUTH_A)
    assert sneaky.status_code == 200
    assert (sneaky.json()["count"], sneaky.json()["results"]) == (0, [])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
async def test_needs_a_valid_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/history/", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page=0", "page"),
        ("page=x", "page"),
        ("page_size=1001", "page_size"),
        ("action_type=upsert", "action_type"),
        ("ip_address=300.1.1.1", "ip_address"),
        ("since=soon", "since"),
        ("user_id=a&user_id=b", "user_id"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    client: httpx.AsyncClient, query: str, parameter: str
) -> None:
    response = await client.get(f"/history/?{query}", headers=AUTH_A)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["parameter"] == parameter


async def test_paginates(client: httpx.AsyncClient) -> None:
    pages = [
        (await client.get(f"/history/?page_size=2&page={n}", headers=AUTH_A)).json()
        for n in (1, 2, 3)
    ]
    assert [p["current_page"] for p in pages] == [1, 2, 3]
    assert [p["next_page"] for p in pages] == [2, 3, None]
    assert [p["previous_page"] for p in pages] == [None, 1, 2]
    assert [len(p["results"]) for p in pages] == [2, 2, 1]
    stamps = [(e["timestamp"], e["id"]) for p in pages for e in p["results"]]
    assert stamps == sorted(stamps, reverse=True)


async def test_same_json_as_the_wsgi_app(engine: Engine, client: httpx.AsyncClient) -> None:
    from auditlog.integrations.server import make_wsgi_app

    app = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as wsgi:
        for query in ("", "?page_size=2&page=2", "?page=0", "?user_id=bob"):
            ours = await client.get(f"/history/{query}", headers=AUTH_A)
            theirs = wsgi.get(f"/history/{query}", headers=AUTH_A)
            assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
        for path in ("/history/", "/history/state/?content_type=tests.models.Customer&object_id=1"):
            ours_head = await client.head(path, headers=AUTH_A)
            theirs_head = wsgi.head(path, headers=AUTH_A)
            assert ours_head.status_code == theirs_head.status_code == 200, path
            assert (await client.head(path)).status_code == wsgi.head(path).status_code == 401


async def test_openapi_shows_the_page_schema(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert set(spec["paths"]["/history/"]) == {"get"}  # HEAD is answered, not documented
    operation = spec["paths"]["/history/"]["get"]
    names = [p["name"] for p in operation["parameters"]]
    assert names[:4] == ["user_id", "ip_address", "action_type", "object_id"]
    assert {"page", "page_size", "since", "until"} <= set(names)
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/HistoryPage"} in ok["anyOf"]  # or a cursor page
    assert {"$ref": "#/components/schemas/CursorPage"} in ok["anyOf"]
    page = spec["components"]["schemas"]["HistoryPage"]
    assert page["example"]["results"][0]["id"] == "01JQ8RREEM71MEZJXNECGE0ATA"
    assert set(page["required"]) >= {"count", "total_pages", "current_page", "results"}
    assert {"400", "401"} <= set(operation["responses"])
    assert operation["security"] == [{"auditlogBearer": []}]
    scheme = spec["components"]["securitySchemes"]["auditlogBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


async def test_async_sessions_and_an_async_authenticate(engine: Engine) -> None:
    seed_history(engine)
    backend = engine.url.get_backend_name()
    url = engine.url.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")
    async_engine = create_async_engine(url)

    async def authenticate(token: str) -> Principal | None:
        return Principal(TENANT_B, "svc") if token == "async-token" else None

    app = FastAPI()
    app.include_router(history_router(async_sessionmaker(async_engine), authenticate=authenticate))
    try:
        async with client_for(app) as client:
            response = await client.get(
                "/history/?action_type=create", headers={"Authorization": "Bearer async-token"}
            )
            denied = await client.get("/history/", headers=AUTH_A)
    finally:
        await async_engine.dispose()
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert {e["tenant_id"] for e in response.json()["results"]} == {TENANT_B}

    # a plain callable that returns a coroutine (a lambda over an async lookup) works as well
    lambda_app = FastAPI()
    lambda_app.include_router(
        history_router(sessionmaker(engine), authenticate=lambda token: authenticate(token))
    )
    async with client_for(lambda_app) as client:
        ok = await client.get(
            "/history/?action_type=create", headers={"Authorization": "Bearer async-token"}
        )
        refused = await client.get("/history/", headers=AUTH_A)
    assert (ok.status_code, ok.json()["count"], refused.status_code) == (200, 2, 401)
    assert denied.status_code == 401


async def test_a_session_dependency_of_the_app(engine: Engine) -> None:
    seed_history(engine)
    opened: list[Session] = []

    def get_session() -> Iterator[Session]:
        with Session(engine) as session:
            opened.append(session)
            yield session

    app = FastAPI()
    app.include_router(
        history_router(
            session_dependency=get_session,
            authenticate=token_authenticator(TOKENS),
            path="/audit/history/",
        )
    )
    async with client_for(app) as client:
        response = await client.get("/audit/history/?user_id=bob", headers=AUTH_A)
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert len(opened) == 1


def test_needs_exactly_one_way_to_get_a_session(engine: Engine) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        history_router(authenticate=token_authenticator(TOKENS))
    with pytest.raises(TypeError, match="exactly one"):
        history_router(
            sessionmaker(engine),
            session_dependency=lambda: None,
            authenticate=token_authenticator(TOKENS),
        )


async def test_mounts_in_a_starlette_app(engine: Engine) -> None:
    seed_history(engine)
    sub = history_app(sessionmaker(engine), authenticate=token_authenticator(TOKENS))
    app = Starlette(routes=[Mount("/audit", app=sub)])
    async with client_for(app) as client:
        ok = await client.get("/audit/history/?action_type=delete", headers=AUTH_A)
        denied = await client.get("/audit/history/")
    assert ok.status_code == 200
    assert_history_page(ok.json())
    assert [e["object_id"] for e in ok.json()["results"]] == ["3"]
    assert denied.status_code == 401


async def test_answers_503_when_the_database_fails(tmp_path: Any) -> None:
    import sqlalchemy as sa

    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")  # no audit_log table
    async with client_for(make_app(empty)) as client:
        history = await client.get("/history/", headers=AUTH_A)
        state = await client.get("/history/state/?content_type=3&object_id=1", headers=AUTH_A)
    empty.dispose()
    for response in (history, state):
        assert (response.status_code, response.json()["error"]) == (503, "unavailable")


# --- schemathesis: the endpoint against its own OpenAPI schema ----------------------------------


# The cases are drawn inside each test because the schema needs the engine fixture.


def _cases(engine: Engine, mode: GenerationMode) -> Any:
    seed_history(engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(engine))
    return schema["/history/"]["GET"].as_strategy(generation_mode=mode)


_FUZZ = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_conforms_to_its_own_openapi_schema(engine: Engine) -> None:
    """Schema-valid queries: 200, documented statuses only, bodies that match the schema."""

    @_FUZZ
    @given(case=_cases(engine, GenerationMode.POSITIVE))
    def check(case: Any) -> None:
        # A cursor is a token the endpoint made, and a model's name one it knows: the schema
        # can say neither, so random strings there are rightly refused.
        query = case.query or {}
        assume(
            not query.get("cursor") and not str(query.get("content_type", "0")).strip("0123456789")
        )
        response = case.call_and_validate(headers=AUTH_A)
        assert response.status_code == 200, response.text

    check()


def test_rejects_invalid_queries_without_a_server_error(engine: Engine) -> None:
    """Schema-invalid queries never cause a 5xx, and the answers stay documented."""

    @_FUZZ
    @given(case=_cases(engine, GenerationMode.NEGATIVE))
    def check(case: Any) -> None:
        # An empty value means "not given" (docs/http.md), which this check would call a miss.
        response = case.call_and_validate(
            headers=AUTH_A, excluded_checks=[checks.negative_data_rejection]
        )
        assert response.status_code < 500, response.text

    check()


def test_conforms_without_credentials(engine: Engine) -> None:
    @settings(_FUZZ, max_examples=20)
    @given(case=_cases(engine, GenerationMode.POSITIVE))
    def check(case: Any) -> None:
        response = case.call_and_validate()
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == ["Bearer"]

    check()


async def test_serves_an_objects_state(engine: Engine, client: httpx.AsyncClient) -> None:
    for url, headers, check in object_state_cases(engine):
        response = await client.get(url, headers=headers)
        assert check(response.status_code, response.json()), (url, response.text)


async def test_the_apps_own_sign_in_dependency_names_the_caller(engine: Engine) -> None:
    """An app reuses its Depends(current_user): no bearer token involved."""
    seed_history(engine)

    class User:
        def __init__(self, tenant_id: str, user_id: str) -> None:
            self.tenant_id, self.user_id = tenant_id, user_id

    async def current_user(request: Request) -> User | None:
        signed_in = request.cookies.get("session")  # the app's own sign-in, simplified
        return User(TENANT_B, signed_in) if signed_in else None

    app = FastAPI()
    app.include_router(history_router(sessionmaker(engine), caller=current_user))
    async with client_for(app) as client:
        client.cookies.set("session", "carol")
        page = (await client.get("/history/")).json()
        assert page["count"] == 2 and {e["tenant_id"] for e in page["results"]} == {TENANT_B}
        client.cookies.clear()
        nobody = await client.get("/history/")
        assert (nobody.status_code, nobody.json()["error"]) == (401, "not_authenticated")
    with pytest.raises(TypeError, match="exactly one of authenticate, caller"):
        history_router(sessionmaker(engine), authenticate=lambda t: None, caller=current_user)
