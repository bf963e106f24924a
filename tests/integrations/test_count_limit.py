"""Every mount takes ``count_limit=``: past it ``count`` is the database's estimate. It is the
mount's setting, never a client's parameter. On every backend (SQLite's counts are always exact)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from auditlog.integrations.fastapi import history_app, history_router
from auditlog.integrations.flask import history_blueprint
from auditlog.integrations.http import token_authenticator
from auditlog.integrations.server import make_wsgi_app

from ..helpers import AUTH_A, TOKENS, seed_history


def _wsgi(engine: Engine, **options: Any) -> Callable[[str], httpx.Response]:
    app = make_wsgi_app(sessionmaker(engine), token_authenticator(TOKENS), **options)
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")
    return lambda url: client.get(url, headers=AUTH_A)


def _flask(engine: Engine, **options: Any) -> Callable[[str], httpx.Response]:
    app = Flask("counts")
    app.register_blueprint(
        history_blueprint(sessionmaker(engine), authenticate=token_authenticator(TOKENS), **options)
    )
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")
    return lambda url: client.get(url, headers=AUTH_A)


def _fastapi(engine: Engine, **options: Any) -> Callable[[str], httpx.Response]:
    app = FastAPI()
    app.include_router(
        history_router(sessionmaker(engine), authenticate=token_authenticator(TOKENS), **options)
    )

    async def get(url: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(url, headers=AUTH_A)

    return lambda url: asyncio.run(get(url))


MOUNTS = {"wsgi": _wsgi, "flask": _flask, "fastapi": _fastapi}


@pytest.mark.parametrize("mount", sorted(MOUNTS))
def test_count_is_exact_up_to_the_mounts_count_limit(engine: Engine, mount: str) -> None:
    seed_history(engine)  # five entries of tenant A
    exact = MOUNTS[mount](engine, count_limit=None)
    body = exact("/history/?page_size=1").json()
    assert (body["count"], body["count_exact"]) == (5, True)
    default = MOUNTS[mount](engine)
    assert default("/history/?page_size=1").json()["count_exact"] is True  # 5 <= 10,000
    limited = MOUNTS[mount](engine, count_limit=2)
    first = limited("/history/?page_size=1").json()
    last = limited("/history/?page_size=1&page=5").json()
    estimates = engine.dialect.name != "sqlite"  # SQLite keeps no row estimates: always exact
    assert first["count_exact"] is not estimates
    assert (last["count"], last["count_exact"]) == (5, True)  # the last page knows its count
    refused = limited("/history/?count_limit=0")  # the client cannot change it
    assert refused.status_code == 400 and refused.json()["parameter"] == "count_limit"


@pytest.mark.parametrize("count_limit", [-1, 1.5, "10", True])
def test_a_bad_count_limit_is_refused_when_mounting(engine: Engine, count_limit: Any) -> None:
    factory, auth = sessionmaker(engine), token_authenticator(TOKENS)
    for mount in (
        lambda: make_wsgi_app(factory, auth, count_limit=count_limit),
        lambda: history_blueprint(factory, authenticate=auth, count_limit=count_limit),
        lambda: history_router(factory, authenticate=auth, count_limit=count_limit),
        lambda: history_app(factory, authenticate=auth, count_limit=count_limit),
    ):
        with pytest.raises(ValueError, match="count_limit must be a number of entries"):
            mount()
