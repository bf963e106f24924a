"""audit_context / current_context / update_context: nesting, isolation, late actors."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import ContextError, audit_context, current_context, update_context

from .helpers import entries
from .models import Customer


def test_outside_any_block_everything_is_none() -> None:
    ctx = current_context()
    assert (ctx.user_id, ctx.tenant_id, ctx.ip_address, ctx.user_agent) == (None,) * 4
    assert dict(ctx) == {"user_id": None, "tenant_id": None, "ip_address": None, "user_agent": None}


def test_nested_blocks_override_given_keys_and_restore_on_exit() -> None:
    tenant = uuid.UUID("23067dbc-6c62-4203-9014-7100e4ffe811")
    with audit_context(user_id="alice", tenant_id=tenant, ip_address="10.0.0.1", request="r1"):
        with audit_context(user_id="bob"):
            inner = current_context()
            assert inner.user_id == "bob"
            assert inner.tenant_id == str(tenant)
            assert inner.ip_address == "10.0.0.1"
            assert inner["request"] == "r1"
        outer = current_context()
        assert outer.user_id == "alice"
    assert current_context().user_id is None


def test_context_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), audit_context(user_id="alice"):
        raise RuntimeError
    assert current_context().user_id is None


@pytest.mark.parametrize("bad", ["999.1.1.1", "not an ip", "10.0.0.1, 10.0.0.2", ""])
def test_malformed_ip_address_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(ContextError, match="ip_address"), audit_context(ip_address=bad):
        pass


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (" 2001:DB8:0:0::1 ", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: stored as the IPv4 address
        ("fe80::1%" + "x" * 60, "fe80::1"),  # the zone would not fit the column
    ],
)
def test_ip_addresses_are_normalised(given: str, stored: str) -> None:
    with audit_context(ip_address=given):
        assert current_context().ip_address == stored


def test_an_address_longer_than_any_is_refused_before_it_is_cached() -> None:
    from auditlog.context import _ip_text_of, ip_text

    before = _ip_text_of.cache_info().currsize
    with pytest.raises(ContextError, match="ip_address: 100009 characters"):
        ip_text("fe80::1%" + "z" * 100_001)  # Python itself accepts a zone of any length
    assert _ip_text_of.cache_info().currsize == before


def test_control_characters_are_dropped_from_the_user_agent() -> None:
    with audit_context(user_agent="curl\x00/8\r\n"):
        assert current_context().user_agent == "curl/8"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("  Mozilla/5.0  ", "Mozilla/5.0"),
        ("a\x85b\x9fc", "abc"),  # C1 controls
        ("evil\u202egnp.exe", "evilgnp.exe"),  # a right-to-left override
        ("x\u2066y\u2069", "xy"),  # isolates
        ("café ✓", "café ✓"),
    ],
)
def test_the_user_agent_keeps_only_text_that_shows_as_itself(given: str, kept: str) -> None:
    with audit_context(user_agent=given):
        assert current_context().user_agent == kept


@pytest.mark.parametrize("key", ["user_id", "tenant_id"])
@pytest.mark.parametrize("bad", ["a\x00b", "a\nb", "a\x9bb", "admin\u202e"])
def test_ids_with_control_or_bidi_characters_are_refused(key: str, bad: str) -> None:
    with pytest.raises(ContextError, match=f"{key}: .*U\\+"), audit_context(**{key: bad}):
        pass


def test_overlong_values_are_rejected_or_bounded() -> None:
    with audit_context(user_agent="x" * 10_000):
        assert len(current_context().user_agent or "") == auditlog.context.USER_AGENT_MAX_LENGTH
    with pytest.raises(ContextError, match="tenant_id"), audit_context(tenant_id="t" * 65):
        pass
    with pytest.raises(ContextError, match="user_id"), audit_context(user_id="u" * 256):
        pass


def test_update_context_needs_an_active_block() -> None:
    with pytest.raises(ContextError, match="update_context"):
        update_context(user_id="alice")


def test_update_context_from_a_copied_context_reaches_the_request() -> None:
    """A framework runs a sync dependency in a worker thread with a copy of the context."""
    with audit_context(ip_address="10.0.0.1"):
        copied = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(copied.run, update_context, user_id="late-actor").result()
        assert current_context().user_id == "late-actor"
        update_context(user_id=None)
        assert current_context().user_id is None


def test_threads_never_see_each_others_context() -> None:
    barrier = threading.Barrier(8)
    seen: dict[int, str | None] = {}

    def work(n: int) -> None:
        with audit_context(user_id=f"user-{n}"):
            barrier.wait()
            seen[n] = current_context().user_id

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {n: f"user-{n}" for n in range(8)}


async def test_asyncio_tasks_never_see_each_others_context() -> None:
    async def work(n: int) -> str | None:
        with audit_context(user_id=f"task-{n}"):
            await asyncio.sleep(0.01 * (5 - n))
            update_context(tenant_id=f"tenant-{n}")
            await asyncio.sleep(0)
            ctx = current_context()
            return f"{ctx.user_id}/{ctx.tenant_id}"

    results = await asyncio.gather(*(work(n) for n in range(5)))
    assert results == [f"task-{n}/tenant-{n}" for n in range(5)]


def test_entries_carry_the_context_of_the_flush(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with (
        audit_context(
            user_id=42,
            tenant_id="t1",
            ip_address="203.0.113.9",
            user_agent="curl/8",
            request_id="r-9",
        ),
        Session_() as session,
    ):
        session.add(Customer(name="in context"))
        update_context(user_id="authenticated-later")
        session.commit()
    with Session_.begin() as session:
        session.add(Customer(name="system change"))
    first, second = entries(engine)
    assert (first.user_id, first.tenant_id, first.ip_address, first.user_agent) == (
        "authenticated-later",
        "t1",
        "203.0.113.9",
        "curl/8",
    )
    assert first.extra == {"request_id": "r-9"}
    assert (second.user_id, second.tenant_id, second.ip_address, second.user_agent) == (
        None,
        None,
        None,
        "",
    )
    assert second.extra is None
