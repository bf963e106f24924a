"""log_access(): an explicit 'access' entry in the session's transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from ..models import Customer, Membership


def test_access_entry_carries_context_and_object(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        customer = Customer(name="Ada")
        session.add(customer)
    context = auditlog.audit_context(user_id="auditor", tenant_id="t1", ip_address="10.1.2.3")
    with context, Session_.begin() as session:
        loaded = session.get_one(Customer, customer.id)
        entry_id = auditlog.log_access(session, loaded)
    create, access = entries(engine)
    assert access.id == entry_id
    assert access.action_type == "access"
    assert (access.user_id, access.tenant_id, access.ip_address) == ("auditor", "t1", "10.1.2.3")
    assert access.object_id == str(customer.id)
    assert access.content_type == create.content_type
    assert access.before_state is None and access.after_state is None


def test_access_entry_is_rolled_back_with_the_transaction(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    with Session_.begin() as session:
        session.add(Membership(org="o", member=1, role="r"))
    with Session_() as session:
        auditlog.log_access(session, session.scalars(sa.select(Membership)).one())
        session.rollback()
    assert entries(engine) == []


def test_access_to_a_pending_object_flushes_it_first(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Membership)
    with Session_.begin() as session:
        member = Membership(org="o", member=2, role="r")
        session.add(member)
        auditlog.log_access(session, member)
    assert [(e.action_type, e.object_id) for e in entries(engine)] == [
        ("create", '["o",2]'),
        ("access", '["o",2]'),
    ]


def test_access_to_an_object_of_another_session_is_an_error(engine: Engine) -> None:
    with (
        Session(engine) as session,
        pytest.raises(auditlog.ConfigurationError, match="not in this session"),
    ):
        auditlog.log_access(session, Customer(name="transient"))
