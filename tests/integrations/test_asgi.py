"""The ASGI middleware on real Starlette and FastAPI apps, driven over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import auditlog
from auditlog import ConfigurationError, current_context, update_context
from auditlog.context import USER_AGENT_MAX_LENGTH
from auditlog.integrations.asgi import AuditContextMiddleware, Message, Scope

from ..helpers import entries
from ..models import Customer

CLIENT = ("203.0.113.7", 51234)
PROXY = ("10.0.0.1", 40000)
KEYS = ("user_id", "tenant_id", "ip_address", "user_agent")


def context_json() -> dict[str, Any]:
    ctx = current_context()
    return {key: ctx[key] for key in KEYS}


async def show_context(request: Request) -> JSONResponse:
    await asyncio.sleep(0)
    return JSONResponse(context_json())


def context_app(**options: Any) -> Starlette:
    """A Starlette app whose one endpoint answers with the audit context it runs in."""
    app = Starlette(routes=[Route("/", show_context)])
    app.add_middleware(AuditContextMiddleware, **options)
    return app


def client_for(app: Any, client: tuple[str, int] = CLIENT) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def get_context(app: Any, client: tuple[str, int] = CLIENT, **kwargs: Any) -> Any:
    async with client_for(app, client) as http:
        response = await http.get("/", **kwargs)
    assert response.status_code == 200
    return response.json()


# --- what the context holds ---------------------------------------------------------------------


async def test_request_runs_in_a_context_with_client_address_and_user_agent() -> None:
    ctx = await get_context(context_app(), headers={"User-Agent": "curl/8.5"})
    assert ctx == {
        "user_id": None,
        "tenant_id": None,
        "ip_address": "203.0.113.7",
        "user_agent": "curl/8.5",
    }


async def test_context_ends_with_the_request() -> None:
    await get_context(context_app())
    assert context_json() == dict.fromkeys(KEYS)


async def test_user_agent_is_cut_to_the_column_length_and_cleaned() -> None:
    ctx = await get_context(context_app(), headers={"User-Agent": "x" * 5000})
    assert ctx["user_agent"] == "x" * USER_AGENT_MAX_LENGTH
    ctx = await get_context(context_app(), headers=[(b"User-Agent", b"bot\x7f/1.0 \xe9")])
    assert ctx["user_agent"] == "bot/1.0 \ufffd"  # not UTF-8: replaced, never mojibake
    ctx = await get_context(context_app(), headers=[(b"User-Agent", "café ✓".encode())])
    assert ctx["user_agent"] == "café ✓"


async def test_without_user_agent_the_context_has_none() -> None:
    app = context_app()
    async with client_for(app) as http:
        del http.headers["User-Agent"]
        response = await http.get("/")
    assert response.json()["user_agent"] is None


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8"])
    ctx = await get_context(app, headers={"X-Forwarded-For": "198.51.100.66"})
    assert ctx["ip_address"] == CLIENT[0]


async def test_x_forwarded_for_from_a_trusted_proxy_gives_the_client() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8", "127.0.0.1"])
    headers = {"X-Forwarded-For": f"198.51.100.66, {CLIENT[0]}, 10.0.0.2"}
    assert (await get_context(app, PROXY, headers=headers))["ip_address"] == CLIENT[0]


async def test_repeated_forwarded_headers_are_read_as_one_chain() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8"])
    headers = [("X-Forwarded-For", "198.51.100.66"), ("X-Forwarded-For", "10.0.0.2")]
    assert (await get_context(app, PROXY, headers=headers))["ip_address"] == "198.51.100.66"


async def test_forwarded_header_when_configured() -> None:
    app = context_app(trusted_proxies=["10.0.0.0/8"], proxy_header="forwarded")
    headers = {
        "Forwarded": f'for="[2001:db8::66]:4711";proto=https, for={CLIENT[0]}',
        "X-Forwarded-For": "198.51.100.1",  # not the configured header: ignored
    }
    assert (await get_context(app, PROXY, headers=headers))["ip_address"] == CLIENT[0]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Forwarded-For", "not-an-ip"),
        ("X-Forwarded-For", "203.0.113.7, <script>"),
        ("X-Forwarded-For", "1.2.3.4'; DROP TABLE audit_log; --"),
        ("X-Forwarded-For", ",,,"),
        ("Forwarded", 'for="unterminated'),
    ],
)
async def test_malformed_forwarded_header_falls_back_to_the_peer(header: str, value: str) -> None:
    for proxy_header in ("x-forwarded-for", "forwarded"):
        app = context_app(trusted_proxies=["10.0.0.0/8"], proxy_header=proxy_header)
        ctx = await get_context(app, PROXY, headers={header: value})
        assert ctx["ip_address"] == PROXY[0]


async def test_peer_that_is_not_an_ip_address_gives_no_address() -> None:
    ctx = await get_context(context_app(), ("unix:/run/app.sock", 0))
    assert ctx["ip_address"] is None


async def test_no_client_in_scope_gives_no_address() -> None:
    seen: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(context_json())

    scope = {"type": "http", "headers": [], "client": None}
    await AuditContextMiddleware(app)(scope, _no_receive, _no_send)
    assert seen == [dict.fromkeys(KEYS)]


async def test_user_and_tenant_from_sync_and_async_getters() -> None:
    async def user_from_header(scope: Scope) -> str | None:
        headers = dict(scope["headers"])
        return headers[b"x-user"].decode() if b"x-user" in headers else None

    app = context_app(get_user_id=user_from_header, get_tenant_id=lambda scope: 42)
    ctx = await get_context(app, headers={"X-User": "alice"})
    assert (ctx["user_id"], ctx["tenant_id"]) == ("alice", "42")
    ctx = await get_context(app)
    assert (ctx["user_id"], ctx["tenant_id"]) == (None, "42")


async def test_a_getter_value_no_entry_can_hold_is_refused_with_a_400_naming_it() -> None:
    """A client sending a 300-character user header, or a tenant with a bidi override, gets a
    400 naming the value, never a 500, and the request never runs without its actor."""
    ran: list[str] = []

    async def endpoint(request: Request) -> JSONResponse:
        ran.append(request.url.path)
        return JSONResponse(context_json())

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(
        AuditContextMiddleware,
        get_user_id=lambda scope: dict(scope["headers"]).get(b"x-user", b"").decode() or None,
        get_tenant_id=lambda scope: dict(scope["headers"]).get(b"x-tenant", b"").decode() or None,
    )
    async with client_for(app) as http:
        for headers, field in (({"X-User": "a" * 300}, "user_id"), ({"X-Tenant": "acme\u202e"}, "tenant_id")):  # fmt: skip
            response = await http.get("/", headers={k: v.encode() for k, v in headers.items()})
            body = response.json()
            assert (response.status_code, body["error"]) == (400, "invalid_context")
            assert body["detail"].startswith(f"{field}:"), body
        assert ran == []
        ok = await http.get("/", headers={"X-User": "a" * 255, "X-Tenant": "acme"})
        assert ok.status_code == 200 and ok.json()["user_id"] == "a" * 255 and ran == ["/"]


async def test_a_websocket_whose_getter_value_is_refused_is_closed_as_a_policy_violation() -> None:
    async def endpoint(websocket: WebSocket) -> None:
        raise AssertionError("the connection must not reach the app")

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(AuditContextMiddleware, get_user_id=lambda scope: "x" * 300)
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "headers": [],
        "client": CLIENT,
    }
    sent = await drive(app, scope, [{"type": "websocket.connect"}])
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1008)]
    assert sent[0]["reason"].startswith("user_id:")


async def test_subclass_can_add_values_to_the_context() -> None:
    class WithRequestId(AuditContextMiddleware):
        async def context_values(self, scope: Scope) -> dict[str, Any]:
            values = await super().context_values(scope)
            values["request_id"] = dict(scope["headers"]).get(b"x-request-id", b"").decode()
            return values

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(dict(current_context().extra))

    app = WithRequestId(Starlette(routes=[Route("/", endpoint)]))
    async with client_for(app) as http:
        response = await http.get("/", headers={"X-Request-Id": "req-1"})
    assert response.json() == {"request_id": "req-1"}


def test_invalid_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        AuditContextMiddleware(show_context, trusted_proxies=["10.0.0.1/8"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="proxy_header"):
        AuditContextMiddleware(show_context, proxy_header="x-real-ip")  # type: ignore[arg-type]


async def test_update_context_in_the_endpoint_changes_the_request_context() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        update_context(user_id="bob", tenant_id="t1")
        return JSONResponse(context_json())

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(AuditContextMiddleware, get_user_id=lambda scope: "anonymous")
    ctx = await get_context(app)
    assert (ctx["user_id"], ctx["tenant_id"], ctx["ip_address"]) == ("bob", "t1", CLIENT[0])


async def test_failing_request_still_closes_its_context() -> None:
    async def boom(request: Request) -> None:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/", boom)])
    app.add_middleware(AuditContextMiddleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=CLIENT)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/")).status_code == 500
    assert context_json() == dict.fromkeys(KEYS)


# --- scope types --------------------------------------------------------------------------------


async def _no_receive() -> Message:
    raise AssertionError("not called")


async def _no_send(message: Message) -> None:
    raise AssertionError("not called")


async def test_lifespan_passes_straight_through() -> None:
    seen: list[tuple[Scope, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append((scope, context_json()))

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await AuditContextMiddleware(app, get_user_id=lambda scope: "never")(
        scope, _no_receive, _no_send
    )
    assert seen == [(scope, dict.fromkeys(KEYS))]


async def drive(app: Any, scope: Scope, incoming: list[Message]) -> list[Message]:
    """Speak the ASGI protocol to ``app``: feed it ``incoming``, return what it sends."""
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for message in incoming:
        queue.put_nowait(message)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, queue.get, send)
    return sent


async def test_starlette_lifespan_runs_without_a_context() -> None:
    seen: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        seen.append(context_json())
        yield
        seen.append(context_json())

    app = Starlette(routes=[Route("/", show_context)], lifespan=lifespan)
    app.add_middleware(AuditContextMiddleware, get_user_id=lambda scope: "never")
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent = await drive(app, scope, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert seen == [dict.fromkeys(KEYS)] * 2


async def test_websocket_connection_runs_in_a_context() -> None:
    async def echo_context(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.send_json(context_json())
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", echo_context)])
    app.add_middleware(AuditContextMiddleware, get_user_id=lambda scope: scope["path"])
    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"user-agent", b"ws-client/1")],
        "client": CLIENT,
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    sent = await drive(
        app,
        scope,
        [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hello"}],
    )
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"]) == {
        "user_id": "/ws",
        "tenant_id": None,
        "ip_address": CLIENT[0],
        "user_agent": "ws-client/1",
    }


# --- isolation ----------------------------------------------------------------------------------


async def test_concurrent_requests_never_see_each_others_context() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        n = int(request.query_params["n"])
        await asyncio.sleep((n % 5) / 200)
        if n % 2:
            update_context(tenant_id=f"tenant-{n}")
        await asyncio.sleep((n % 3) / 200)
        return JSONResponse(context_json())

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(
        AuditContextMiddleware,
        get_user_id=lambda scope: scope["query_string"].decode(),
    )

    async def one(n: int) -> None:
        async with client_for(app, (f"198.51.100.{n}", 1000 + n)) as http:
            response = await http.get("/", params={"n": n}, headers={"User-Agent": f"agent-{n}"})
        assert response.json() == {
            "user_id": f"n={n}",
            "tenant_id": f"tenant-{n}" if n % 2 else None,
            "ip_address": f"198.51.100.{n}",
            "user_agent": f"agent-{n}",
        }

    await asyncio.gather(*(one(n) for n in range(1, 60)))


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


async def test_write_during_a_starlette_request_carries_its_context(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    def create(request: Request) -> JSONResponse:  # sync: Starlette runs it in a worker thread
        return JSONResponse({"id": add_customer(maker, "Ada")})

    app = Starlette(routes=[Route("/customers", create, methods=["POST"])])
    app.add_middleware(
        AuditContextMiddleware,
        trusted_proxies=["10.0.0.0/8"],
        get_tenant_id=lambda scope: "acme",
    )
    async with client_for(app, PROXY) as http:
        response = await http.post(
            "/customers",
            headers={"User-Agent": "Mozilla/5.0 (X11)", "X-Forwarded-For": CLIENT[0]},
        )
    entry = entry_of(engine, response.json()["id"])
    assert entry.action_type == "create"
    assert (entry.ip_address, entry.user_agent, entry.tenant_id, entry.user_id) == (
        CLIENT[0],
        "Mozilla/5.0 (X11)",
        "acme",
        None,
    )


async def test_streamed_body_and_background_task_write_within_the_request_context(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    ids: list[int] = []

    async def stream(request: Request) -> StreamingResponse:
        update_context(user_id="streamer")

        def body() -> Iterator[bytes]:  # iterated in worker threads, after the endpoint returned
            ids.append(add_customer(maker, "streamed"))
            yield b"done"

        later = BackgroundTask(lambda: ids.append(add_customer(maker, "background")))
        return StreamingResponse(body(), background=later)

    app = Starlette(routes=[Route("/", stream)])
    app.add_middleware(AuditContextMiddleware)
    async with client_for(app) as http:
        assert (await http.get("/", headers={"User-Agent": "ua"})).text == "done"
    assert len(ids) == 2
    for customer_id in ids:
        entry = entry_of(engine, customer_id)
        assert (entry.user_id, entry.ip_address, entry.user_agent) == ("streamer", CLIENT[0], "ua")


def current_user(request: Request, authorization: Annotated[str, Header()]) -> str:
    """A sync auth dependency: FastAPI runs it in a worker thread."""
    request.app.state.threads["dependency"] = threading.get_ident()
    user = authorization.removeprefix("Bearer ")
    update_context(user_id=user)
    return user


def fastapi_app(maker: sessionmaker[Session], threads: dict[str, int]) -> FastAPI:
    """A FastAPI app whose actor is only known to the sync auth dependency."""
    app = FastAPI()
    app.state.threads = threads
    app.add_middleware(AuditContextMiddleware, trusted_proxies=["10.0.0.0/8"])

    @app.post("/sync/customers")
    def create_sync(name: str, user: Annotated[str, Depends(current_user)]) -> dict[str, int]:
        return {"id": add_customer(maker, name)}

    @app.post("/async/customers")
    async def create_async(
        name: str, user: Annotated[str, Depends(current_user)]
    ) -> dict[str, int]:
        threads["endpoint"] = threading.get_ident()
        return {"id": add_customer(maker, name)}

    return app


@pytest.mark.parametrize("endpoint", ["sync", "async"])
async def test_fastapi_actor_set_by_a_sync_dependency_reaches_the_entries(
    engine: Engine, maker: sessionmaker[Session], endpoint: str
) -> None:
    threads: dict[str, int] = {}
    app = fastapi_app(maker, threads)
    async with client_for(app, PROXY) as http:
        response = await http.post(
            f"/{endpoint}/customers",
            params={"name": "Grace"},
            headers={
                "Authorization": "Bearer alice",
                "User-Agent": "httpx-test",
                "X-Forwarded-For": f"198.51.100.9, {CLIENT[0]}",
            },
        )
    assert response.status_code == 200, response.text
    assert threads["dependency"] != threading.get_ident(), "the dependency ran in a worker thread"
    entry = entry_of(engine, response.json()["id"])
    assert (entry.user_id, entry.ip_address, entry.user_agent) == ("alice", CLIENT[0], "httpx-test")


async def test_fastapi_concurrent_requests_write_entries_with_their_own_context(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    app = fastapi_app(maker, {})

    async def one(n: int) -> tuple[int, int]:
        async with client_for(app, (f"198.51.100.{n}", 1000 + n)) as http:
            response = await http.post(
                "/sync/customers",
                params={"name": f"customer-{n}"},
                headers={"Authorization": f"Bearer user-{n}", "User-Agent": f"agent-{n}"},
            )
        assert response.status_code == 200, response.text
        return n, response.json()["id"]

    results = await asyncio.gather(*(one(n) for n in range(1, 13)))
    for n, customer_id in results:
        entry = entry_of(engine, customer_id)
        assert entry.after_state is not None
        assert entry.after_state["name"] == f"customer-{n}"
        assert (entry.user_id, entry.ip_address, entry.user_agent) == (
            f"user-{n}",
            f"198.51.100.{n}",
            f"agent-{n}",
        )


async def test_plain_text_endpoint_without_writes_leaves_no_entries(
    engine: Engine, maker: sessionmaker[Session]
) -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(AuditContextMiddleware)
    async with client_for(app) as http:
        assert (await http.get("/")).text == "hi"
    assert entries(engine) == []
