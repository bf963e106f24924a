"""enable() / disable() on every target the contract lists, sync and async."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import auditlog
from auditlog import ConfigurationError

from .helpers import entries
from .models import Customer


@pytest.fixture(autouse=True)
def _registered() -> None:
    auditlog.register(Customer)


def write(session: Session) -> None:
    session.add(Customer(name="x"))
    session.commit()


def test_enable_without_target_covers_every_session(engine: Engine) -> None:
    auditlog.enable()
    with Session(engine) as session:
        write(session)
    assert len(entries(engine)) == 1
    auditlog.disable()
    with Session(engine) as session:
        write(session)
    assert len(entries(engine)) == 1


def test_enable_twice_writes_one_entry(engine: Engine) -> None:
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    auditlog.enable(maker)
    auditlog.enable()  # global and per-maker at once: still one entry per change
    with maker() as session:
        write(session)
    assert len(entries(engine)) == 1


def test_sessionmaker_target_leaves_other_sessions_alone(engine: Engine) -> None:
    audited = sessionmaker(engine)
    plain = sessionmaker(engine)
    auditlog.enable(audited)
    with plain() as session:
        write(session)
    with audited() as session:
        write(session)
    assert len(entries(engine)) == 1
    auditlog.disable(audited)
    with audited() as session:
        write(session)
    assert len(entries(engine)) == 1


def test_session_subclass_target(engine: Engine) -> None:
    class AppSession(Session):
        pass

    auditlog.enable(AppSession)
    with AppSession(engine) as session:
        write(session)
    with Session(engine) as session:
        write(session)
    assert len(entries(engine)) == 1


def test_session_instance_target(engine: Engine) -> None:
    session = Session(engine)
    auditlog.enable(session)
    write(session)
    session.close()
    with Session(engine) as other:
        write(other)
    assert len(entries(engine)) == 1


def test_scoped_session_target(engine: Engine) -> None:
    registry = scoped_session(sessionmaker(engine))
    auditlog.enable(registry)
    write(registry())
    registry.remove()
    assert len(entries(engine)) == 1


def test_bad_target_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot audit"):
        auditlog.enable(object())


@pytest.fixture
def async_url(backend: str, engine: Engine) -> str:
    url = engine.url
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        backend, "mariadb+asyncmy"
    )
    return url.set(drivername=driver).render_as_string(hide_password=False)


async def test_async_sessionmaker_target_with_context(engine: Engine, async_url: str) -> None:
    async_engine = create_async_engine(async_url)
    try:
        audited = async_sessionmaker(async_engine)
        plain = async_sessionmaker(async_engine)
        auditlog.enable(audited)
        auditlog.enable(audited)
        with auditlog.audit_context(user_id="async-user", ip_address="2001:db8::1"):
            async with audited() as session:
                session.add(Customer(name="async"))
                await session.commit()
            async with plain() as session:
                session.add(Customer(name="plain"))
                await session.commit()
        (entry,) = entries(engine)
        assert entry.user_id == "async-user"
        assert entry.ip_address == "2001:db8::1"
        assert entry.after_state is not None and entry.after_state["name"] == "async"
        auditlog.disable(audited)
        async with audited() as session:
            session.add(Customer(name="after disable"))
            await session.commit()
        assert len(entries(engine)) == 1
    finally:
        await async_engine.dispose()


async def test_async_session_instance_target(engine: Engine, async_url: str) -> None:
    async_engine = create_async_engine(async_url)
    try:
        async with AsyncSession(async_engine) as session:
            auditlog.enable(session)
            session.add(Customer(name="a"))
            await session.flush()
            customer = await session.scalar(sa.select(Customer))
            assert customer is not None
            customer.name = "b"
            await session.commit()
        assert [e.action_type for e in entries(engine)] == ["create", "update"]
    finally:
        await async_engine.dispose()


async def test_access_entries_from_an_async_session(engine: Engine, async_url: str) -> None:
    async_engine = create_async_engine(async_url)
    try:
        async with AsyncSession(async_engine) as session:
            session.add(Customer(id=77, name="read me"))
            await session.commit()
            customer = await session.get(Customer, 77)
            with pytest.raises(TypeError, match="log_access_async"):
                auditlog.log_access(session, customer)
            with auditlog.audit_context(user_id="async-reader"):
                entry_id = await auditlog.log_access_async(session, customer)
            await session.commit()
        (access,) = entries(engine, action_type="access")
        assert (access.id, access.user_id, access.object_id) == (entry_id, "async-reader", "77")
    finally:
        await async_engine.dispose()
