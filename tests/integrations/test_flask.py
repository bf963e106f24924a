"""GET /history/ as a Flask blueprint, through Flask's test client, on every backend."""

from __future__ import annotations

from typing import Any

import flask
import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session, sessionmaker

from auditlog.integrations.flask import history_blueprint
from auditlog.integrations.http import token_authenticator
from auditlog.integrations.server import make_wsgi_app

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


def make_app(engine: Engine, **options: Any) -> Flask:
    app = Flask("lending")
    app.register_blueprint(
        history_blueprint(sessionmaker(engine), authenticate=token_authenticator(TOKENS), **options)
    )
    return app


@pytest.fixture
def client(engine: Engine) -> FlaskClient:
    seed_history(engine)
    return make_app(engine).test_client()


def test_serves_the_history_page(client: FlaskClient) -> None:
    response = client.get("/history/?action_type=update", headers=AUTH_A)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert_history_page(body)
    assert body["count"] == 1
    (entry,) = body["results"]
    assert (entry["user_id"], entry["ip_address"], entry["object_id"]) == (
        "bob",
        "2001:db8::1",
        "1",
    )
    assert entry["before_state"]["name"] == "customer 1"
    assert entry["after_state"]["name"] == "Ada"


def test_scopes_every_answer_to_the_tokens_tenant(client: FlaskClient) -> None:
    a = client.get("/history/", headers=AUTH_A).get_json()
    b = client.get("/history/", headers=AUTH_B).get_json()
    assert (a["count"], b["count"]) == (5, 2)
    assert {e["tenant_id"] for e in a["results"]} == {TENANT_A}
    assert {e["tenant_id"] for e in b["results"]} == {TENANT_B}
    sneaky = client.get("/history/", query_string={"tenant_id": TENANT_B}, headers=AUTH_A)
    assert sneaky.status_code == 200
    assert (sneaky.get_json()["count"], sneaky.get_json()["results"]) == (0, [])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}])
def test_needs_a_valid_bearer_token(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/history/", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "not_authenticated"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("page=0", "page"),
        ("page_size=abc", "page_size"),
        ("action_type=create,nope", "action_type"),
        ("ip_address=::g", "ip_address"),
        ("until=tomorrow", "until"),
        ("object_id=1&object_id=2", "object_id"),
        ("user=alice", "user"),
        ("user_id=%C3%28", "user_id"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    client: FlaskClient, query: str, parameter: str
) -> None:
    response = client.get(f"/history/?{query}", headers=AUTH_A)
    assert response.status_code == 400
    assert response.get_json()["parameter"] == parameter


def test_paginates(client: FlaskClient) -> None:
    second = client.get("/history/?page_size=2&page=2", headers=AUTH_A).get_json()
    assert (second["count"], second["total_pages"], second["current_page"]) == (5, 3, 2)
    assert (second["previous_page"], second["next_page"]) == (1, 3)
    assert (second["has_previous"], second["has_next"]) == (True, True)
    assert len(second["results"]) == 2


def test_same_json_as_the_wsgi_app(engine: Engine, client: FlaskClient) -> None:
    app = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS))
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t") as wsgi:
        for query in ("", "?page_size=2&page=3", "?action_type=delete,update", "?page=x"):
            ours = client.get(f"/history/{query}", headers=AUTH_A)
            theirs = wsgi.get(f"/history/{query}", headers=AUTH_A)
            assert (ours.status_code, ours.get_data()) == (theirs.status_code, theirs.content)


def test_url_prefix_path_and_a_scoped_session(engine: Engine) -> None:
    seed_history(engine)
    registry = scoped_session(sessionmaker(engine))
    app = Flask("lending")
    app.register_blueprint(
        history_blueprint(
            registry,
            authenticate=token_authenticator(TOKENS),
            path="/log",
            url_prefix="/audit",
            name="audit",
        )
    )
    response = app.test_client().get("/audit/log?user_id=carol", headers=AUTH_B)
    registry.remove()
    assert response.status_code == 200
    assert response.get_json()["count"] == 2


def test_answers_503_when_the_database_fails(tmp_path: Any) -> None:
    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")  # no audit_log table
    response = make_app(empty).test_client().get("/history/", headers=AUTH_A)
    empty.dispose()
    assert (response.status_code, response.get_json()["error"]) == (503, "unavailable")


def test_serves_an_objects_state(engine: Engine, client: FlaskClient) -> None:
    for url, headers, check in object_state_cases(engine):
        response = client.get(url, headers=headers)
        assert check(response.status_code, response.get_json()), (url, response.text)


def test_the_apps_own_sign_in_names_the_caller(engine: Engine) -> None:
    """A callable reads the caller the app's way (here flask.g, set by a before_request hook)."""
    seed_history(engine)
    app = flask.Flask(__name__)

    @app.before_request
    def sign_in() -> None:
        if flask.request.cookies.get("session") == "bob":
            flask.g.tenant_id, flask.g.user_id = TENANT_A, "bob"

    app.register_blueprint(
        history_blueprint(
            sessionmaker(engine), caller=lambda: flask.g if "tenant_id" in flask.g else None
        )
    )
    client = app.test_client()
    client.set_cookie("session", "bob")
    page = client.get("/history/").get_json()
    assert page["count"] == 5 and {e["tenant_id"] for e in page["results"]} == {TENANT_A}
    client.delete_cookie("session")
    assert client.get("/history/").status_code == 401
