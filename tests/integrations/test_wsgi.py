"""The WSGI middleware on real Flask apps: the test client, and a real threaded WSGI server."""

from __future__ import annotations

import gc
import socketserver
import threading
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper

import flask
import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import Client

import auditlog
from auditlog import ConfigurationError, current_context, update_context
from auditlog.context import USER_AGENT_MAX_LENGTH
from auditlog.integrations.wsgi import AuditContextMiddleware

from ..helpers import entries
from ..models import Customer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

CLIENT = "203.0.113.7"
PROXY = "10.0.0.1"
KEYS = ("user_id", "tenant_id", "ip_address", "user_agent")
EMPTY = dict.fromkeys(KEYS)


def context_json() -> dict[str, Any]:
    ctx = current_context()
    return {key: ctx[key] for key in KEYS}


def context_app(**options: Any) -> flask.Flask:
    """A Flask app whose one endpoint answers with the audit context it runs in."""
    app = flask.Flask(__name__)
    app.get("/")(context_json)
    app.wsgi_app = AuditContextMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def get_context(app: flask.Flask, peer: str = CLIENT, **kwargs: Any) -> Any:
    response = app.test_client().get("/", environ_base={"REMOTE_ADDR": peer}, **kwargs)
    assert response.status_code == 200
    return response.json


# --- what the context holds ---------------------------------------------------------------------


def test_request_runs_in_a_context_with_client_address_and_user_agent() -> None:
    ctx = get_context(context_app(), headers={"User-Agent": "curl/8.5"})
    assert ctx == {
        "user_id": None,
        "tenant_id": None,
        "ip_address": CLIENT,
        "user_agent": "curl/8.5",
    }


def test_context_ends_with_the_request() -> None:
    get_context(context_app())
    assert context_json() == EMPTY


def test_user_agent_is_cut_to_the_column_length_and_cleaned() -> None:
    app = context_app()
    assert get_context(app, headers={"User-Agent": "y" * 5000})["user_agent"] == (
        "y" * USER_AGENT_MAX_LENGTH
    )
    assert get_context(app, headers={"User-Agent": "a\tb"})["user_agent"] == "ab"
    assert get_context(app, headers={"User-Agent": ""})["user_agent"] == ""


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("café ✓".encode(), "café ✓"), (b"bot/1.0 \xe9", "bot/1.0 \ufffd")],
)
def test_user_agent_bytes_are_read_as_utf8(sent: bytes, kept: str) -> None:
    """PEP 3333 hands header bytes over as latin-1 text; the client wrote UTF-8."""
    environ = {"REMOTE_ADDR": CLIENT, "HTTP_USER_AGENT": sent.decode("latin-1")}
    response = context_app().test_client().get("/", environ_base=environ)
    assert response.json["user_agent"] == kept


def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8"])
    assert get_context(app, headers={"X-Forwarded-For": "198.51.100.66"})["ip_address"] == CLIENT


def test_x_forwarded_for_from_a_trusted_proxy_gives_the_client() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": f"198.51.100.66, {CLIENT}, 10.0.0.2"}
    assert get_context(app, PROXY, headers=headers)["ip_address"] == CLIENT


def test_forwarded_header_when_configured() -> None:
    app = context_app(trusted_proxies=[PROXY], proxy_header="forwarded")
    headers = {"Forwarded": f'for="{CLIENT}:4711";proto=https', "X-Forwarded-For": "192.0.2.1"}
    assert get_context(app, PROXY, headers=headers)["ip_address"] == CLIENT


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "not-an-ip"},
        {"X-Forwarded-For": f"{CLIENT}, 999.1.1.1"},
        {"Forwarded": "for=<script>"},
        {"Forwarded": 'for="[2001:db8::1'},
    ],
)
def test_malformed_forwarded_header_falls_back_to_the_peer(headers: dict[str, str]) -> None:
    for proxy_header in ("x-forwarded-for", "forwarded"):
        app = context_app(trusted_proxies=["10.0.0.0/8"], proxy_header=proxy_header)
        assert get_context(app, PROXY, headers=headers)["ip_address"] == PROXY


def test_remote_addr_that_is_not_an_ip_address_gives_no_address() -> None:
    assert get_context(context_app(), "unix-socket")["ip_address"] is None


def test_user_and_tenant_from_getters() -> None:
    app = context_app(
        get_user_id=lambda environ: environ.get("REMOTE_USER"),
        get_tenant_id=lambda environ: environ.get("HTTP_X_TENANT"),
    )
    ctx = get_context(app, headers={"X-Tenant": "acme"}, environ_overrides={"REMOTE_USER": "carol"})
    assert (ctx["user_id"], ctx["tenant_id"]) == ("carol", "acme")


def test_a_getter_value_no_entry_can_hold_is_refused_with_a_400_naming_it() -> None:
    app = context_app(get_tenant_id=lambda environ: environ.get("HTTP_X_TENANT"))
    response = app.test_client().get("/", headers={"X-Tenant": "t" * 65})
    assert response.status_code == 400 and response.json is not None
    assert response.json["error"] == "invalid_context"
    assert response.json["detail"].startswith("tenant_id:")
    assert get_context(app, headers={"X-Tenant": "t" * 64})["tenant_id"] == "t" * 64


def test_invalid_options_are_configuration_errors() -> None:
    app = flask.Flask(__name__)
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        AuditContextMiddleware(app.wsgi_app, trusted_proxies=["nope"])
    with pytest.raises(ConfigurationError, match="proxy_header"):
        AuditContextMiddleware(app.wsgi_app, proxy_header="x-real-ip")  # type: ignore[arg-type]


def test_before_request_hook_can_set_the_actor() -> None:
    app = flask.Flask(__name__)

    @app.before_request
    def authenticate() -> None:
        token = flask.request.headers.get("Authorization", "")
        if token.startswith("Bearer "):
            update_context(user_id=token.removeprefix("Bearer "))

    app.get("/")(context_json)
    app.wsgi_app = AuditContextMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    ctx = get_context(app, headers={"Authorization": "Bearer dave"})
    assert (ctx["user_id"], ctx["ip_address"]) == ("dave", CLIENT)


# --- when the context ends ----------------------------------------------------------------------


class RecordingBody:
    """A response body that records the context it is iterated and closed in."""

    def __init__(self, seen: list[tuple[str, dict[str, Any]]]) -> None:
        self.seen = seen

    def __iter__(self) -> Iterator[bytes]:
        self.seen.append(("iter", context_json()))
        yield b"one"
        self.seen.append(("next", context_json()))
        yield b"two"

    def close(self) -> None:
        self.seen.append(("close", context_json()))


def test_body_is_iterated_and_closed_inside_the_context_which_then_ends() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(("call", context_json()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return RecordingBody(seen)

    wrapped = AuditContextMiddleware(app, get_user_id=lambda environ: "erin")
    body = wrapped({"REMOTE_ADDR": CLIENT, "HTTP_USER_AGENT": "ua"}, lambda *args: None)  # type: ignore[arg-type, return-value]
    assert seen == [
        ("call", {"user_id": "erin", "tenant_id": None, "ip_address": CLIENT, "user_agent": "ua"})
    ]
    assert context_json() == EMPTY, "between __call__ and iteration the caller sees no context"
    assert list(body) == [b"one", b"two"]
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]  # a second close does nothing
    expected = seen[0][1]
    assert seen == [("call", expected), ("iter", expected), ("next", expected), ("close", expected)]
    assert context_json() == EMPTY


def test_body_dropped_without_close_ends_its_context_quietly() -> None:
    """Some clients and servers never call close(): the block is exited when the body is freed."""
    exited: list[dict[str, Any]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"body"]

    body = AuditContextMiddleware(app)({"REMOTE_ADDR": CLIENT}, lambda *args: None)  # type: ignore[arg-type, return-value]
    finalizer = weakref.finalize(body, lambda: exited.append(context_json()))
    assert list(body) == [b"body"]
    del body
    gc.collect()
    assert not finalizer.alive
    assert exited == [EMPTY]
    assert context_json() == EMPTY


def test_update_context_during_the_call_is_seen_while_streaming() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        update_context(user_id="late")
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            yield str(current_context().user_id).encode()

        return body()

    response = Client(AuditContextMiddleware(app)).get("/")
    assert response.data == b"late"


def test_exception_in_the_app_propagates_and_leaves_no_context() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        Client(AuditContextMiddleware(app)).get("/")
    assert context_json() == EMPTY


def test_file_wrapper_bodies_are_returned_as_is(tmp_path: Path) -> None:
    """A server's sendfile path needs its own wrapper object; a file write nothing to audit."""
    path = tmp_path / "report.txt"
    path.write_bytes(b"report")

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](path.open("rb"))  # type: ignore[no-any-return]

    environ = {"REMOTE_ADDR": CLIENT, "wsgi.file_wrapper": FileWrapper}
    body = AuditContextMiddleware(app)(environ, lambda *args: None)  # type: ignore[arg-type, return-value]
    assert isinstance(body, FileWrapper)
    assert b"".join(body) == b"report"
    body.close()
    assert context_json() == EMPTY


# --- entries written during requests ------------------------------------------------------------


@pytest.fixture
def maker(engine: Engine) -> sessionmaker[Session]:
    auditlog.register(Customer)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    return maker


def add_customer(maker: sessionmaker[Session], name: str) -> int:
    with maker.begin() as session:
        customer = Customer(name=name)
        session.add(customer)
    return customer.id


def entry_of(engine: Engine, customer_id: int) -> auditlog.AuditLog:
    (entry,) = entries(engine, object_id=str(customer_id))
    return entry


def customer_app(maker: sessionmaker[Session]) -> flask.Flask:
    """A Flask app that authenticates in a before_request hook and creates customers."""
    app = flask.Flask(__name__)

    @app.before_request
    def authenticate() -> None:
        token = flask.request.headers.get("Authorization", "")
        if token.startswith("Bearer "):
            update_context(user_id=token.removeprefix("Bearer "))

    @app.post("/customers")
    def create() -> dict[str, int]:
        return {"id": add_customer(maker, flask.request.args["name"])}

    @app.get("/export")
    def export() -> flask.Response:
        def rows() -> Iterator[str]:  # runs after the view returned, while the body is read
            yield "id\n"
            yield f"{add_customer(maker, 'exported')}\n"

        return flask.Response(rows(), mimetype="text/csv")

    @app.get("/file")
    def file() -> flask.Response:
        return flask.send_file(__file__)

    app.wsgi_app = AuditContextMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, trusted_proxies=["127.0.0.1"], get_tenant_id=lambda environ: "acme"
    )
    return app


def test_write_during_a_flask_request_carries_its_context(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    response = (
        customer_app(maker)
        .test_client()
        .post(
            "/customers?name=Ada",
            environ_base={"REMOTE_ADDR": CLIENT},
            headers={"Authorization": "Bearer alice", "User-Agent": "Mozilla/5.0"},
        )
    )
    entry = entry_of(engine, response.json["id"])  # type: ignore[index]
    assert entry.action_type == "create"
    assert (entry.user_id, entry.tenant_id, entry.ip_address, entry.user_agent) == (
        "alice",
        "acme",
        CLIENT,
        "Mozilla/5.0",
    )


def test_write_while_streaming_the_body_carries_the_request_context(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    response = (
        customer_app(maker)
        .test_client()
        .get(
            "/export",
            environ_base={"REMOTE_ADDR": CLIENT},
            headers={"Authorization": "Bearer bob", "User-Agent": "csv-client"},
        )
    )
    customer_id = int(response.text.splitlines()[1])
    entry = entry_of(engine, customer_id)
    assert (entry.user_id, entry.ip_address, entry.user_agent) == ("bob", CLIENT, "csv-client")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serve a WSGI app on a real threaded server on 127.0.0.1; yields a function giving its URL."""
    servers: list[tuple[WSGIServer, threading.Thread]] = []

    def start(app: WSGIApplication) -> str:
        server = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def test_real_server_concurrent_requests_write_entries_with_their_own_context(
    engine: Engine, maker: sessionmaker[Session], serve: Any
) -> None:
    seen_results: list[Any] = []

    def recorder(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result = middleware(environ, start_response)
        seen_results.append(type(result))
        return result

    app = customer_app(maker)
    middleware = app.wsgi_app
    url = serve(recorder)

    def one(n: int) -> tuple[int, int]:
        response = httpx.post(
            f"{url}/customers",
            params={"name": f"customer-{n}"},
            headers={
                "Authorization": f"Bearer user-{n}",
                "User-Agent": f"agent-{n}",
                "X-Forwarded-For": f"198.51.100.{n}",  # believed: the peer is 127.0.0.1
            },
        )
        assert response.status_code == 200, response.text
        return n, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(1, 17)))
    for n, customer_id in results:
        entry = entry_of(engine, customer_id)
        assert entry.after_state is not None
        assert entry.after_state["name"] == f"customer-{n}"
        assert (entry.user_id, entry.tenant_id, entry.ip_address, entry.user_agent) == (
            f"user-{n}",
            "acme",
            f"198.51.100.{n}",
            f"agent-{n}",
        )

    # Without a forwarded header the peer, a trusted proxy itself, is the client.
    response = httpx.post(f"{url}/customers", params={"name": "direct"})
    assert entry_of(engine, response.json()["id"]).ip_address == "127.0.0.1"

    # A file body reaches the server as its own wrapper, for its sendfile path.
    seen_results.clear()
    response = httpx.get(f"{url}/file")
    assert response.status_code == 200
    assert response.content == Path(__file__).read_bytes()
    assert seen_results == [FileWrapper]
