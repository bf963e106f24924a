"""One engine fixture over SQLite, PostgreSQL and MariaDB, and per-test resets of auditlog's state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import capture
from auditlog.integrity import erasure_table, seal_entry_table, seal_table
from auditlog.lifecycle import prune_entry_table, prune_table
from auditlog.relay import relay_entry_table, relay_table

from .backends import BACKENDS, IN_CI, selected_backends, server_url
from .models import Base

_ENGINES: dict[str, Engine] = {}


@pytest.fixture(scope="session")
def _stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _make_engine(backend: str, stack: ExitStack, tmp_dir: Path) -> Engine:
    if backend == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_dir / 'auditlog-test.sqlite3'}")

        @event.listens_for(engine, "connect")
        def _sqlite_fk(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    else:
        url = stack.enter_context(server_url(backend, stack))
        engine = sa.create_engine(url, pool_size=20, max_overflow=10)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # a configured server that does not answer
        message = f"{backend}: cannot connect to {engine.url!r}: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        auditlog.metadata.drop_all(conn)
        auditlog.create_tables(conn)
        Base.metadata.create_all(conn)
    return engine


@pytest.fixture(params=selected_backends(), ids=lambda b: b)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test that runs on a backend that backend's mark, so ``-m postgresql`` works."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") in BACKENDS:
            item.add_marker(getattr(pytest.mark, callspec.params["backend"]))


@pytest.fixture
def engine(backend: str, _stack: ExitStack, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine on a clean database with the test models and the audit tables."""
    if backend not in _ENGINES:
        _ENGINES[backend] = _make_engine(backend, _stack, tmp_path_factory.mktemp(backend))
    eng = _ENGINES[backend]
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(auditlog.AuditLog.__table__.delete())
        conn.execute(seal_entry_table.delete())
        conn.execute(seal_table.delete())
        conn.execute(erasure_table.delete())
        conn.execute(prune_entry_table.delete())
        conn.execute(prune_table.delete())
        conn.execute(relay_entry_table.delete())
        conn.execute(relay_table.delete())
    return eng


@pytest.fixture
def Session_(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker bound to the engine with auditing enabled on it."""
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    return maker


@pytest.fixture(autouse=True)
def _reset_auditlog() -> Iterator[None]:
    """Every test starts with no registered models, no listeners and no cached content types."""
    yield
    capture.reset()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for eng in _ENGINES.values():
        eng.dispose()
