"""Erasure: a data subject's values gone from every table, the log still verified."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import AuditLog
from auditlog.integrity import ErasureError, erasure_table, seal_entry_table, seal_table

from ..helpers import entries
from ..models import Customer, Membership, Tag

LOG = AuditLog.__table__
SECRETS = ("grace", "198.51.100.23", "Phone 555-0199", "+1 555 0199")


def _history(maker: sessionmaker[Session]) -> None:
    auditlog.register(Customer)
    with (
        auditlog.audit_context(
            user_id="grace",
            ip_address="198.51.100.23",
            user_agent="Phone 555-0199",
            phone="+1 555 0199",
        ),
        maker.begin() as session,
    ):
        session.add(Customer(id=1, name="Ada", email="ada@example.com"))
    with auditlog.audit_context(user_id="alan", ip_address="203.0.113.9"), maker.begin() as session:
        session.get_one(Customer, 1).email = "ada@example.org"
        session.add(Customer(id=2, name="Bob"))


def _stored_text(engine: Engine) -> str:
    """Everything the audit and integrity tables hold, as text."""
    with engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in (LOG, seal_table, seal_entry_table, erasure_table)
            for row in conn.execute(sa.select(table))
        )


def test_an_actor_erased_from_a_sealed_log_leaves_it_verified(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    head = auditlog.seal(engine).head
    assert all(secret in _stored_text(engine) for secret in SECRETS)
    done = auditlog.erase(engine, user_id="grace", reason="GDPR request 42", erased_by="dpo")
    assert (done.entries, done.fields) == (1, ("user_id", "ip_address", "user_agent", "extra"))
    assert not any(secret in _stored_text(engine) for secret in SECRETS)
    [erased] = [e for e in entries(engine) if e.user_id is None]
    assert (erased.ip_address, erased.user_agent, erased.extra) == (None, "", None)
    assert erased.after_state is not None and erased.after_state["email"] == "ada@example.com"
    report = auditlog.verify(engine, head=head)
    assert report.intact, report.problems
    assert report.erased == [(erased.id, ("extra", "ip_address", "user_agent", "user_id"))]
    with engine.connect() as conn:
        recorded = conn.execute(sa.select(erasure_table)).one()
    assert (recorded.kind, recorded.entries, recorded.reason, recorded.erased_by) == (
        "actor",
        1,
        "GDPR request 42",
        "dpo",
    )


def test_an_object_erased_keeps_the_proof_and_later_changes_are_caught(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    auditlog.seal(engine)
    ada = [e.id for e in entries(engine, object_id="1")]
    done = auditlog.erase(engine, content_type=Customer, object_id=1)
    assert (done.entries, done.fields) == (
        2,
        ("object_id", "renamed_to", "before_state", "after_state"),
    )
    assert "ada@example" not in _stored_text(engine) and entries(engine, object_id="1") == []
    assert [
        (e.object_id, e.renamed_to, e.before_state, e.after_state)
        for e in entries(engine)
        if e.id in ada
    ] == [("", None, None, None)] * 2
    report = auditlog.verify(engine)
    assert report.intact, report.problems
    assert sorted(report.erased) == sorted(
        (i, ("after_state", "before_state", "object_id", "renamed_to")) for i in ada
    )
    assert [e.object_id for e in entries(engine, object_id="2")] == ["2"]  # Bob's kept
    auditlog.erase(engine, user_id="alan")  # the same entry erased again, of its actor
    report = auditlog.verify(engine)
    assert report.intact, report.problems
    changed = ada[1]
    with engine.begin() as conn:  # an erased field given a value again, then a kept one changed
        conn.execute(sa.update(LOG).where(LOG.c.id == changed).values(after_state={"x": 1}))
    assert [p.kind for p in auditlog.verify(engine).problems] == ["entry_changed"]
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).where(LOG.c.id == changed).values(after_state=None))
    assert auditlog.verify(engine).intact
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).where(LOG.c.id == changed).values(action_type="delete"))
    assert [p.entry_id for p in auditlog.verify(engine).problems] == [changed]


def test_an_entry_not_as_sealed_is_refused_and_nothing_is_erased(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    auditlog.seal(engine)
    forged = entries(engine, user_id="grace")[0].id
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).where(LOG.c.id == forged).values(object_id="9"))
    with pytest.raises(ErasureError, match=f"entry {forged} is not as sealed"):
        auditlog.erase(engine, user_id="grace")
    assert entries(engine, user_id="grace")[0].ip_address == "198.51.100.23"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(erasure_table)).scalar() == 0


def test_unsealed_entries_erased_then_sealed_verify(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    auditlog.erase(engine, user_id="grace")
    auditlog.seal(engine)
    report = auditlog.verify(engine)
    assert report.intact and report.erased == []  # erased before sealing: nothing to prove


def test_erasure_passes_the_guard_that_refuses_everything_else(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    auditlog.seal(engine)
    auditlog.protect(engine)
    try:
        assert (
            auditlog.erase(engine, content_type="tests.models.Customer", object_id=2).entries == 1
        )
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.update(LOG).values(before_state=None))
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.delete(erasure_table))
    finally:
        auditlog.unprotect(engine)
    assert auditlog.verify(engine).intact


def test_erase_names_what_is_wrong_with_its_arguments(engine: Engine) -> None:
    auditlog.register(Tag)
    with pytest.raises(ValueError, match="not both and not neither"):
        auditlog.erase(engine)
    with pytest.raises(ValueError, match="not both"):
        auditlog.erase(engine, user_id="a", content_type=Tag, object_id=1)
    with pytest.raises(ValueError, match="both content_type and object_id"):
        auditlog.erase(engine, object_id=1)
    with pytest.raises(ValueError, match=r"no audited model is named 'nowhere\.Model'"):
        auditlog.erase(engine, content_type="nowhere.Model", object_id=1)
    for unknown in (999_999, 10**30, 0, -1):
        with pytest.raises(ValueError, match=f"no audited model has the id {unknown}$"):
            auditlog.erase(engine, content_type=unknown, object_id=1)
    with engine.connect() as conn:  # nothing recorded as erased
        assert conn.execute(sa.select(sa.func.count()).select_from(erasure_table)).scalar() == 0


def test_erase_creates_its_table_on_a_database_made_before_it(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _history(Session_)
    with engine.begin() as conn:
        erasure_table.drop(conn)
    assert auditlog.erase(engine, user_id="grace").entries == 1
    assert sa.inspect(engine).has_table("audit_erasure")


def test_an_object_is_erased_under_every_key_it_had_and_no_other_objects(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Its entries under the keys it had before changing it (up to each change) go too; an
    object that took a key it gave up keeps its entries."""
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="Ada", email="ada@example.com"))
    with Session_.begin() as session:
        session.get_one(Customer, 1).id = 2
    with Session_.begin() as session:
        session.get_one(Customer, 2).id = 3
    with Session_.begin() as session:  # another customer takes the key 1
        session.add(Customer(id=1, name="Bob", email="bob@example.com"))
    auditlog.seal(engine)
    done = auditlog.erase(engine, content_type=Customer, object_id=3, reason="request 7")
    assert done.entries == 3
    stored = _stored_text(engine)
    assert "ada@example.com" not in stored and "bob@example.com" in stored
    assert [(e.object_id, e.action_type) for e in entries(engine) if e.object_id] == [
        ("1", "create")  # Bob's
    ]
    assert auditlog.verify(engine).intact


def test_a_composite_key_is_erased_given_as_a_tuple(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Membership)
    with Session_.begin() as session:
        session.add_all([Membership(org="acme", member=m, role="admin") for m in (7, 8)])
    assert auditlog.erase(engine, content_type=Membership, object_id=("acme", 7)).entries == 1
    assert sorted(e.object_id for e in entries(engine)) == ["", '["acme",8]']
