"""The framework-neutral core of GET /history/ and its stdlib WSGI app, on every backend."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

import auditlog
from auditlog.integrations.http import (
    HTTPError,
    Principal,
    bearer_token,
    parse_query,
    scoped_query,
    token_authenticator,
)
from auditlog.integrations.server import make_wsgi_app
from auditlog.query import HistoryQuery

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
from ..models import Course

# --- parsing, no database -----------------------------------------------------------------------


def test_parse_query_reads_the_endpoints_parameters() -> None:
    query = parse_query(
        b"user_id=alice&ip_address=10.0.0.1&action_type=create&object_id=42&page=2&page_size=5"
    )
    assert query == HistoryQuery(
        user_id="alice",
        ip_address="10.0.0.1",
        action_type="create",
        object_id="42",
        page=2,
        page_size=5,
    )


def test_action_type_may_repeat_or_be_comma_separated() -> None:
    query = parse_query("action_type=create&action_type=update,delete")
    assert query.action_type == ("create", "update", "delete")


def test_empty_values_count_as_absent() -> None:
    assert parse_query("user_id=&page=&action_type=") == HistoryQuery()


def test_ids_are_taken_as_given_other_values_trimmed() -> None:
    query = parse_query("object_id=%20C1&user_id=bob%20&page=%202&action_type=%20create")
    assert (query.object_id, query.user_id) == (" C1", "bob ")
    assert (query.page, query.action_type) == (2, ("create",))


def test_values_are_percent_decoded_as_utf8() -> None:
    assert parse_query(b"user_id=%C3%A9mile+z").user_id == "émile z"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=" + "9" * 5000, "page"),
        ("page=2147483648", "page"),
        ("page=%D9%A1", "page"),  # an Arabic-Indic digit
        ("page_size=0", "page_size"),
        ("page_size=1001", "page_size"),
        ("content_type=99999999999", "content_type"),
        ("since=yesterday", "since"),
        ("until=2025-13-01", "until"),
        ("since=20240101", "since"),  # not read as a Unix timestamp
        ("until=-1", "until"),
        ("since=1.7e9", "since"),
        ("user_id=a&user_id=b", "user_id"),
        ("user_id=%FF", "user_id"),
        ("object_id=a%00b", "object_id"),
        ("tenant=x", "tenant"),
        ("%FF=1", "query"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(query: str, parameter: str) -> None:
    with pytest.raises(HTTPError) as caught:
        parse_query(query)
    assert caught.value.status == 400
    assert caught.value.body.parameter == parameter
    assert caught.value.body.detail.startswith(f"{parameter}: ")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("ip_address=10.0.0", "ip_address"), ("action_type=create,upsert", "action_type")],
)
def test_values_query_history_refuses_are_a_400_naming_them(query: str, parameter: str) -> None:
    with pytest.raises(HTTPError) as caught:
        scoped_query(Principal(TENANT_A), parse_query(query))
    assert (caught.value.status, caught.value.body.parameter) == (400, parameter)


def test_times_are_utc_and_extreme_offsets_clamp_instead_of_failing() -> None:
    query = parse_query("since=0001-01-01T00:00:00%2B05:00&until=2025-03-26T15:00:00%2B02:00")
    assert query.since == dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    assert query.until == dt.datetime(2025, 3, 26, 13, tzinfo=dt.timezone.utc)
    naive = parse_query("since=2025-03-26T13:00:00").since
    assert naive is not None and naive.tzinfo is dt.timezone.utc


def test_scope_is_always_the_principals_tenant() -> None:
    principal = Principal(TENANT_A, "alice")
    assert scoped_query(principal, HistoryQuery()) == HistoryQuery(tenant_id=TENANT_A)
    own = HistoryQuery(tenant_id=TENANT_A)
    assert scoped_query(principal, own) == own
    assert scoped_query(principal, HistoryQuery(tenant_id=TENANT_B)) is None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "token-a", "Bearer to ken", "Bearer é"],
)
def test_missing_or_malformed_authorization_is_a_401(header: str | None) -> None:
    with pytest.raises(HTTPError) as caught:
        bearer_token(header)
    assert caught.value.status == 401
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.DEF-123_~+/=") == "abc.DEF-123_~+/="


def test_token_authenticator_maps_tokens_to_principals() -> None:
    authenticate = token_authenticator({"t1": TENANT_A, "t2": Principal(TENANT_B, "svc")})
    assert authenticate("t1") == Principal(TENANT_A)
    assert authenticate("t2") == Principal(TENANT_B, "svc")
    assert authenticate("t3") is None
    assert authenticate("t") is None


def test_a_principal_needs_a_tenant() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        Principal("")
    with pytest.raises(ValueError, match="tenant_id"):
        Principal(None)  # type: ignore[arg-type]


# --- the WSGI app, on every backend -------------------------------------------------------------


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    seed_history(engine)
    app = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS))
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://testserver") as client:
        yield client


def test_wsgi_app_serves_the_history_page(client: httpx.Client) -> None:
    response = client.get("/history/", headers=AUTH_A)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert_history_page(body)
    assert body["count"] == 5
    assert (body["total_pages"], body["current_page"], body["has_next"]) == (1, 1, False)
    newest = body["results"][0]
    assert (newest["action_type"], newest["user_id"], newest["ip_address"]) == (
        "delete",
        "bob",
        "2001:db8::1",
    )
    assert newest["after_state"] is None
    assert newest["before_state"]["name"] == "customer 3"


def test_wsgi_app_filters_by_every_parameter(client: httpx.Client) -> None:
    creates = client.get("/history/?action_type=create", headers=AUTH_A).json()
    assert [e["action_type"] for e in creates["results"]] == ["create"] * 3
    by_bob = client.get("/history/", params={"user_id": "bob"}, headers=AUTH_A).json()
    assert {e["action_type"] for e in by_bob["results"]} == {"update", "delete"}
    from_ip = client.get("/history/?ip_address=10.0.0.1", headers=AUTH_A).json()
    assert from_ip["count"] == 3
    one = client.get("/history/?object_id=1", headers=AUTH_A).json()
    assert [e["action_type"] for e in one["results"]] == ["update", "create"]
    assert one["results"][0]["after_state"]["name"] == "Ada"


def test_wsgi_app_paginates(client: httpx.Client) -> None:
    first = client.get("/history/?page_size=2", headers=AUTH_A).json()
    assert (first["count"], first["total_pages"], len(first["results"])) == (5, 3, 2)
    assert (first["has_previous"], first["previous_page"]) == (False, None)
    assert (first["has_next"], first["next_page"]) == (True, 2)
    last = client.get("/history/?page_size=2&page=3", headers=AUTH_A).json()
    assert (last["current_page"], len(last["results"])) == (3, 1)
    assert (last["has_previous"], last["previous_page"], last["has_next"]) == (True, 2, False)
    ids = [e["id"] for p in (1, 2, 3) for e in client.get(
        f"/history/?page_size=2&page={p}", headers=AUTH_A
    ).json()["results"]]  # fmt: skip
    assert len(set(ids)) == 5
    beyond = client.get("/history/?page=9", headers=AUTH_A).json()
    assert (beyond["results"], beyond["has_next"]) == ([], False)


def test_wsgi_app_scopes_every_answer_to_the_tokens_tenant(client: httpx.Client) -> None:
    a = client.get("/history/", headers=AUTH_A).json()
    b = client.get("/history/", headers=AUTH_B).json()
    assert {e["tenant_id"] for e in a["results"]} == {TENANT_A}
    assert {e["tenant_id"] for e in b["results"]} == {TENANT_B}
    assert b["count"] == 2
    sneaky = client.get("/history/", params={"tenant_id": TENANT_B}, headers=AUTH_A)
    assert sneaky.status_code == 200
    assert sneaky.json()["count"] == 0
    assert sneaky.json()["results"] == []
    own = client.get("/history/", params={"tenant_id": TENANT_A}, headers=AUTH_A).json()
    assert own["count"] == 5
    by_carol = client.get("/history/?user_id=carol", headers=AUTH_A).json()
    assert by_carol["count"] == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "x"}])
def test_wsgi_app_needs_a_valid_bearer_token(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.get("/history/?page=0", headers=headers)  # 401 wins over 400
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "not_authenticated"


def test_wsgi_app_names_the_bad_parameter(client: httpx.Client) -> None:
    response = client.get("/history/?page_size=5000", headers=AUTH_A)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_parameter",
        "detail": "page_size: must be from 1 to 1000 (got 5000)",
        "parameter": "page_size",
    }
    unknown = client.get("/history/?actiontype=create", headers=AUTH_A)
    assert (unknown.status_code, unknown.json()["parameter"]) == (400, "actiontype")


@pytest.mark.parametrize(
    "query",
    [
        "since=0001-01-01T00:00:00%2B14:00",
        "until=9999-12-31T23:59:59-14:00",
        "since=1970-01-01&until=2999-01-01",
        "user_id=%F0%9F%92%A9&object_id=" + "x" * 5000,
        "ip_address=fe80::1%25eth0",
        "content_type=2147483647&page=2147483647&page_size=1000",
        "tenant_id=%E2%80%8B",
    ],
)
def test_wsgi_app_answers_odd_but_valid_queries_on_every_backend(
    client: httpx.Client, query: str
) -> None:
    response = client.get(f"/history/?{query}", headers=AUTH_A)
    assert response.status_code == 200, response.text
    assert_history_page(response.json())


def test_wsgi_app_time_window(client: httpx.Client) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    later = (now + dt.timedelta(hours=1)).isoformat()
    earlier = (now - dt.timedelta(hours=1)).isoformat()
    assert client.get("/history/", params={"since": later}, headers=AUTH_A).json()["count"] == 0
    assert client.get("/history/", params={"since": earlier}, headers=AUTH_A).json()["count"] == 5
    assert client.get("/history/", params={"until": earlier}, headers=AUTH_A).json()["count"] == 0


def test_wsgi_app_other_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/history", headers=AUTH_A).status_code == 200
    missing = client.get("/nope", headers=AUTH_A)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    post = client.post("/history/", headers=AUTH_A)
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
    head = client.head("/history/", headers=AUTH_A)
    assert (head.status_code, head.content) == (200, b"")


def test_wsgi_app_answers_503_when_the_database_fails(tmp_path: Any) -> None:
    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")  # no audit_log table
    app = make_wsgi_app(sessionmaker(empty), token_authenticator(TOKENS))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        response = client.get("/history/", headers=AUTH_A)
    empty.dispose()
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "audit_log" not in response.text  # the cause is logged, not shown


def test_the_old_module_path_still_works_with_a_deprecation_warning() -> None:
    import auditlog.http

    with pytest.warns(DeprecationWarning, match=r"auditlog\.integrations\.server"):
        assert auditlog.http.make_wsgi_app is make_wsgi_app
    with pytest.warns(DeprecationWarning, match=r"auditlog\.integrations\.http"):
        assert auditlog.http.Principal is Principal
    with pytest.raises(AttributeError):
        auditlog.http.no_such_name  # noqa: B018


def test_a_page_too_large_is_a_400_naming_the_page_size_that_fits(engine: Engine) -> None:
    seed_history(engine)  # tenant A: five entries of a few hundred bytes each
    app = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS), max_page_bytes=1500)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        refused = client.get("/history/?page_size=5", headers=AUTH_A)
        assert refused.status_code == 400
        body = refused.json()
        assert (body["error"], body["parameter"]) == ("page_too_large", "page_size")
        fits = int(re.search(r"page_size=(\d+)", body["detail"])[1])  # type: ignore[index]
        assert 1 <= fits < 5
        served = client.get(f"/history/?page_size={fits}", headers=AUTH_A)
        assert served.status_code == 200 and len(served.json()["results"]) == fits
        assert len(served.content) <= 1500
    tiny = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS), max_page_bytes=10)
    with httpx.Client(transport=httpx.WSGITransport(app=tiny), base_url="http://t") as client:
        assert client.get("/history/?page_size=1", headers=AUTH_A).status_code == 200


def test_the_wsgi_app_serves_an_objects_state(engine: Engine, client: httpx.Client) -> None:
    for url, headers, check in object_state_cases(engine):
        response = client.get(url, headers=headers)
        assert check(response.status_code, response.json()), (url, response.text)


def test_an_objects_state_refuses_a_model_name_no_model_has(client: httpx.Client) -> None:
    """As on GET /history/: a name no model has is a 400 listing the known ones, never an object
    without a state."""
    unknown = client.get("/history/state/?content_type=shop.Basket&object_id=1", headers=AUTH_A)
    body = unknown.json()
    assert (unknown.status_code, body["parameter"]) == (400, "content_type")
    assert "no model is named 'shop.Basket'" in body["detail"]
    assert "tests.models.Customer" in body["detail"]


def test_models_are_named_and_pages_read_on_with_a_cursor(client: httpx.Client) -> None:
    by_name = client.get("/history/?content_type=tests.models.Customer", headers=AUTH_A).json()
    assert by_name["count"] == 5
    assert {e["model"] for e in by_name["results"]} == {"tests.models.Customer"}
    unknown = client.get("/history/?content_type=shop.Basket", headers=AUTH_A)
    body = unknown.json()
    assert (unknown.status_code, body["parameter"]) == (400, "content_type")
    assert "tests.models.Customer" in body["detail"]  # the known ones are listed
    first = client.get("/history/?page_size=2", headers=AUTH_A).json()
    seen = [e["id"] for e in first["results"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/history/?page_size=2&cursor={cursor}", headers=AUTH_A).json()
        assert set(page) == {
            "has_next",
            "has_previous",
            "next_cursor",
            "previous_cursor",
            "results",
        }
        seen += [e["id"] for e in page["results"]]
        cursor = page["next_cursor"]
    everything = client.get("/history/?page_size=100", headers=AUTH_A).json()
    assert seen == [e["id"] for e in everything["results"]]
    both = client.get(f"/history/?page=2&cursor={first['next_cursor']}", headers=AUTH_A)
    assert (both.status_code, both.json()["parameter"]) == (400, "page")


def test_an_object_whose_id_has_white_space_is_asked_for_as_it_is(engine: Engine) -> None:
    auditlog.register(Course)
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    with auditlog.audit_context(tenant_id=TENANT_A), maker.begin() as session:
        session.add_all([Course(code="C1"), Course(code=" C1")])
    app = make_wsgi_app(maker, token_authenticator(TOKENS))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as client:
        padded = client.get("/history/", params={"object_id": " C1"}, headers=AUTH_A).json()
        plain = client.get("/history/", params={"object_id": "C1"}, headers=AUTH_A).json()
    assert [e["after_state"]["code"] for e in padded["results"]] == [" C1"]
    assert [e["after_state"]["code"] for e in plain["results"]] == ["C1"]
