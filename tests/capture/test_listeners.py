"""enable() / disable() on every target the contract lists, sync and async."""

from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)

import auditlog
from auditlog import ConfigurationError, UnauditedWriteWarning

from ..helpers import entries
from ..models import Customer, Tag


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
    with plain() as session, pytest.warns(UnauditedWriteWarning, match="not enabled"):
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
    with Session(engine) as session, pytest.warns(UnauditedWriteWarning):
        write(session)
    assert len(entries(engine)) == 1


def test_session_instance_target(engine: Engine) -> None:
    session = Session(engine)
    auditlog.enable(session)
    write(session)
    session.close()
    with Session(engine) as other, pytest.warns(UnauditedWriteWarning):
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
                with pytest.warns(UnauditedWriteWarning):
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


async def test_an_async_sessionmaker_keeps_the_sync_session_class_of_its_class(
    engine: Engine, async_url: str
) -> None:
    class RoutingSession(Session):
        """An application's own sync session (a get_bind router, say)."""

    class AppAsyncSession(AsyncSession):
        sync_session_class = RoutingSession

    async_engine = create_async_engine(async_url)
    try:
        maker = async_sessionmaker(async_engine, class_=AppAsyncSession)
        auditlog.enable(maker)
        async with maker() as session:
            assert isinstance(session.sync_session, RoutingSession)
            session.add(Customer(name="routed"))
            await session.commit()
        assert [e.after_state and e.after_state["name"] for e in entries(engine)] == ["routed"]
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


def _attached(engine: Engine, maker: sessionmaker[Session]) -> list[str]:
    """Every capture listener on ``maker``, ``engine`` or the content type table, by event name."""
    from auditlog.capture import content_types, core_statements, listeners

    found = [name for name, fn in listeners.SESSION_EVENTS if sa.event.contains(maker, name, fn)]
    for name, fn, _ in core_statements.ENGINE_EVENTS.listeners:
        if sa.event.contains(engine, name, fn):
            found.append(f"engine {name}")
    for name, fn, _ in content_types.ENGINE_EVENTS.listeners:
        if sa.event.contains(engine, name, fn):
            found.append(f"engine {name} (content types)")
    table = auditlog.ContentType.__table__
    for name in ("after_create", "after_drop"):
        if sa.event.contains(table, name, content_types.clear_cache):
            found.append(f"table {name}")
    return found


def test_disable_detaches_everything_enable_and_capture_attached(engine: Engine) -> None:
    maker = sessionmaker(engine)
    assert _attached(engine, maker) == []
    auditlog.enable(maker)
    with maker() as session:
        write(session)  # engine listeners are attached on first use
        session.execute(sa.insert(Customer.__table__).values(name="core"))
        session.commit()
    assert len(entries(engine)) == 2
    assert len(_attached(engine, maker)) == 6 + 4 + 4 + 2
    auditlog.disable(maker)
    assert _attached(engine, maker) == []
    with maker() as session:
        write(session)
    assert len(entries(engine)) == 2


def test_disable_without_target_detaches_every_target(engine: Engine) -> None:
    makers = [sessionmaker(engine), sessionmaker(engine)]
    for maker in makers:
        auditlog.enable(maker)
        with maker() as session:
            write(session)
    auditlog.disable()
    for maker in makers:
        assert _attached(engine, maker) == []


def test_reset_forgets_registrations_and_listeners(engine: Engine) -> None:
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    with maker() as session:
        write(session)
    auditlog.capture.reset()
    assert not auditlog.is_registered(Customer)
    assert _attached(engine, maker) == []


def test_nothing_is_attached_at_import() -> None:
    import subprocess
    import sys

    script = (
        "import sqlalchemy as sa, auditlog\n"
        "from auditlog.capture import content_types\n"
        "t = auditlog.ContentType.__table__\n"
        "assert not any(sa.event.contains(t, n, content_types.clear_cache)\n"
        "               for n in ('after_create', 'after_drop'))\n"
        "from sqlalchemy.orm import Session\n"
        "from auditlog.capture.listeners import SESSION_EVENTS\n"
        "assert not any(sa.event.contains(Session, n, f) for n, f in SESSION_EVENTS)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_session_that_is_not_enabled_is_pointed_out_once(engine: Engine) -> None:
    """An event hook that opens Session(bind=connection) inside a flush records nothing."""
    audited = sessionmaker(engine)
    auditlog.enable(audited)
    with Session(engine) as session, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        write(session)
        write(session)
    assert [w.category for w in said] == [UnauditedWriteWarning]
    assert "Customer" in str(said[0].message)
    with Session(engine) as session, warnings.catch_warnings():
        warnings.simplefilter("error")
        write(session)  # said once is enough
        session.add(Tag(label="unregistered"))
        session.commit()  # and flushes of unregistered models never warn
    auditlog.capture.reset()
    auditlog.register(Customer)
    auditlog.enable()  # every session: nothing is left out, nothing to say
    with Session(engine) as session, warnings.catch_warnings():
        warnings.simplefilter("error")
        write(session)


def test_a_model_of_a_registry_not_yet_configured_leaves_flushes_audited(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A registered model of another declarative base whose relationships SQLAlchemy has not
    configured yet (nothing used it so far) does not fail the flush of another model."""

    class Other(DeclarativeBase):
        pass

    link = sa.Table(
        "other_link",
        Other.metadata,
        sa.Column("left_id", sa.ForeignKey("other_left.id"), primary_key=True),
        sa.Column("right_id", sa.ForeignKey("other_right.id"), primary_key=True),
    )

    class Right(Other):
        __tablename__ = "other_right"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Left(Other):
        __tablename__ = "other_left"
        id: Mapped[int] = mapped_column(primary_key=True)
        rights: Mapped[list[Right]] = relationship(secondary=link)

    auditlog.register(Left)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="x"))
    assert [(e.action_type, e.object_id) for e in entries(engine)] == [("create", "1")]
