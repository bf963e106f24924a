"""An object's recorded state at any moment, on every backend and write path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import MASKED, InvalidQueryError

from ..helpers import entries, store_text
from ..models import Customer, Ledger, Loan, Membership, Parrot, Pet, Truck, Vehicle


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def last_entry_id(engine: Engine) -> str:
    return entries(engine)[-1].id


def test_each_moment_gives_the_state_then(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Ledger)
    with Session_() as session:
        before = now()
        assert auditlog.state_as_of(session, Ledger, 1, before) is None
    with Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada", balance=Decimal("10.00"), data={"a": [1]}))
    created = last_entry_id(engine)
    with Session_.begin() as session:
        session.get_one(Ledger, 1).balance = Decimal("12.50")
    updated = last_entry_id(engine)
    with Session_.begin() as session:
        session.delete(session.get_one(Ledger, 1))
    with Session_() as session:
        as_of = lambda at: auditlog.state_as_of(session, Ledger, 1, at)  # noqa: E731
        first = {"key": 1, "owner": "ada", "balance": "10.00", "data": {"a": [1]}, "secret": ""}
        assert as_of(created) == first
        assert as_of(updated) == {**first, "balance": "12.50"}
        assert as_of(now()) is None  # deleted
        assert as_of(entries(engine)[0].timestamp) == first  # a time: its entries included
        assert auditlog.state_as_of(session, Ledger, "1", updated) == as_of(updated)
        # times beyond the years 1 to 9999 once in UTC: before anything, after everything
        assert as_of(dt.datetime(1, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=5)))) is None
        end = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        assert as_of(end) is None and auditlog.object_as_of(session, Ledger, 1, end) is None


def test_entries_of_one_flush_are_ordered_by_id(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger)
    with Session_.begin() as session:
        ledger = Ledger(key=1, owner="ada")
        session.add(ledger)
        session.flush()
        ledger.owner = "bob"
        session.flush()
    create, update = entries(engine)
    with Session_() as session:
        assert auditlog.state_as_of(session, Ledger, 1, create.id)["owner"] == "ada"  # type: ignore[index]
        assert auditlog.state_as_of(session, Ledger, 1, update.id)["owner"] == "bob"  # type: ignore[index]


def test_an_object_is_followed_through_a_change_of_its_key(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger)
    with Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada"))
    with Session_.begin() as session:
        session.get_one(Ledger, 1).key = 2
    rekey = entries(engine)[-1]
    assert (rekey.object_id, rekey.renamed_to) == ("1", "2")
    with Session_.begin() as session:
        session.get_one(Ledger, 2).owner = "bob"
    with Session_() as session:
        at_rekey = {"key": 2, "owner": "ada", "balance": "0.00", "data": {}, "secret": ""}
        assert auditlog.state_as_of(session, Ledger, 1, rekey.id) is None  # it left key 1
        assert auditlog.state_as_of(session, Ledger, 2, rekey.id) == at_rekey
        assert auditlog.state_as_of(session, Ledger, 2, now())["owner"] == "bob"  # type: ignore[index]
        assert auditlog.state_as_of(session, Ledger, 1, entries(engine)[0].id)["key"] == 1  # type: ignore[index]


def test_composite_keys_inheritance_json_collections_and_statements(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    for model in (Membership, Pet, Vehicle, Customer, Loan):
        auditlog.register(model)
    with Session_.begin() as session:
        session.add(Membership(org="acme", member=7, role="admin"))
        session.add(Parrot(id=5, name="Polly", secret="s"))
        session.add(Truck(id=9, wheels=18))
        session.add(Customer(id=3, name="Cy", loans=[Loan(amount=Decimal("5"))]))
    with Session_.begin() as session:
        session.execute(sa.update(Pet).values(name="Pol"))
        session.execute(sa.update(Membership).values(role="owner"))
    with Session_() as session:
        at = now()
        assert auditlog.state_as_of(session, Membership, ("acme", 7), at)["role"] == "owner"  # type: ignore[index]
        assert auditlog.state_as_of(session, Membership, '["acme",7]', at)["role"] == "owner"  # type: ignore[index]
        assert auditlog.state_as_of(session, Parrot, 5, at)["name"] == "Pol"  # type: ignore[index]
        assert auditlog.state_as_of(session, Truck, 9, at)["wheels"] == 18  # type: ignore[index]
        loans = auditlog.state_as_of(session, Customer, 3, at)["loans"]  # type: ignore[index]
        assert len(loans) == 1


def test_object_as_of_is_a_transient_instance_with_unrecorded_attributes_listed(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger, mask={"secret"}, exclude={"data"})
    with Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada", balance=Decimal("3.10"), secret="pin"))
    with Session_() as session:
        snapshot = auditlog.object_as_of(session, Ledger, 1, now())
        assert snapshot is not None
        ledger = snapshot.instance
        assert sa.inspect(ledger).transient and ledger not in session
        assert (ledger.key, ledger.owner, ledger.balance) == (1, "ada", Decimal("3.10"))
        assert snapshot.unset == {"secret", "data"}
        assert snapshot.state["secret"] == MASKED
        assert snapshot.entry_id == entries(engine)[0].id
        assert auditlog.object_as_of(session, Ledger, 2, now()) is None


def test_a_tenant_sees_only_its_own_entries(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger)
    with auditlog.audit_context(tenant_id="t1"), Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada"))
    with Session_() as session:
        assert auditlog.state_as_of(session, Ledger, 1, now(), tenant_id="t1") is not None
        assert auditlog.state_as_of(session, Ledger, 1, now(), tenant_id="t2") is None


@pytest.mark.parametrize("at", ["not-an-entry", "01JQ8RREEM71MEZJXNECGE0ATA", 5])
def test_a_bad_moment_is_an_error_naming_at(engine: Engine, at: Any) -> None:
    with Session(engine) as session, pytest.raises(InvalidQueryError, match=r"^at: "):
        auditlog.state_as_of(session, Ledger, 1, at)


def test_the_state_is_read_with_one_statement(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """(Its plan at scale, on PostgreSQL: tests/query/test_indexes.py and docs/time-travel.md.)"""
    auditlog.register(Ledger)
    with Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada"))
    statements: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        with Session_() as session:
            auditlog.state_as_of(session, Ledger, 1, now())
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)
    assert len(statements) == 1


def test_a_state_that_is_not_a_json_object_is_shown_as_the_history_shows_it(
    engine: Engine,
    Session_: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="ada"))
    log = auditlog.AuditLog.__table__
    with engine.begin() as conn:  # what a trigger or a migration might have written
        conn.execute(sa.update(log).values(after_state=["not", "an", "object"]))
    with Session_() as session, caplog.at_level("WARNING", logger="auditlog.timetravel"):
        state = auditlog.state_as_of(session, Customer, 1, now())
    assert state == {"value": ["not", "an", "object"]}
    assert "not a JSON object" in caplog.text


def test_a_state_that_is_not_json_is_shown_as_stored(
    engine: Engine,
    Session_: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if engine.dialect.name == "postgresql":
        pytest.skip("jsonb refuses text that is not JSON when it is written")
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="ada"))
    (create,) = entries(engine)
    store_text(engine, create.id, "after_state", "{not json")
    with Session_() as session, caplog.at_level("WARNING", logger="auditlog.timetravel"):
        assert auditlog.state_as_of(session, Customer, 1, now()) == {"value": "{not json"}
        snapshot = auditlog.object_as_of(session, Customer, 1, now())
    assert snapshot is not None and snapshot.entry_id == create.id
    assert "name" in snapshot.unset
    assert f"{create.id!r} holds an after_state that is not JSON" in caplog.text
