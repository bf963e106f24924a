"""Undoing an entry, or a whole transaction, as ordinary audited changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import RevertConflict, RevertError

from ..helpers import entries, store_text
from ..models import Customer, Ledger, Loan, Membership, Parrot, Pet


def ledgers(engine: Engine) -> dict[int, tuple[str, Decimal, str]]:
    with Session(engine) as session:
        return {x.key: (x.owner, x.balance, x.secret) for x in session.scalars(sa.select(Ledger))}


@pytest.fixture
def history(engine: Engine, Session_: sessionmaker[Session]) -> list[str]:
    """Ledger 1 created by ada, its balance raised, then its owner changed: three entries."""
    auditlog.register(Ledger, mask={"secret"})
    with Session_.begin() as session:
        session.add(Ledger(key=1, owner="ada", balance=Decimal("10.00"), secret="pin"))
    with Session_.begin() as session:
        session.get_one(Ledger, 1).balance = Decimal("20.00")
    with Session_.begin() as session:
        session.get_one(Ledger, 1).owner = "bob"
    return [e.id for e in entries(engine)]


def test_reverting_an_update_restores_what_it_changed_and_is_recorded(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with auditlog.audit_context(user_id="ops"), Session_.begin() as session:
        restored = auditlog.revert(session, history[1])
        assert isinstance(restored, Ledger) and restored.balance == Decimal("10.00")
    assert ledgers(engine) == {1: ("bob", Decimal("10.00"), "pin")}
    undo = entries(engine)[-1]
    assert (undo.action_type, undo.user_id, undo.changed_fields) == ("update", "ops", ["balance"])
    assert undo.extra == {"reverts": history[1]}


def test_nothing_is_committed_by_a_revert(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with Session_() as session:
        auditlog.revert(session, history[2])
        session.rollback()
    assert ledgers(engine) == {1: ("bob", Decimal("20.00"), "pin")}
    assert [e.id for e in entries(engine)] == history


def test_a_later_change_of_the_same_attribute_is_a_conflict_unless_forced(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with Session_.begin() as session:
        session.get_one(Ledger, 1).balance = Decimal("30.00")
    with Session_() as session, pytest.raises(RevertConflict, match="balance") as caught:
        auditlog.revert(session, history[1])
    assert caught.value.attributes == ("balance",)
    assert caught.value.entries == (entries(engine)[-1].id,)
    with Session_.begin() as session:
        auditlog.revert(session, history[1], force=True)
    assert ledgers(engine)[1][1] == Decimal("10.00")


def test_reverting_a_create_deletes_and_a_delete_creates_again(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger, mask={"secret"})
    with Session_.begin() as session:
        session.add(Ledger(key=2, owner="cy", balance=Decimal("1.00"), secret="pin"))
    with Session_.begin() as session:
        session.delete(session.get_one(Ledger, 2))
    _, delete = entries(engine)
    with Session_.begin() as session:
        auditlog.revert(session, delete.id)
    assert ledgers(engine) == {2: ("cy", Decimal("1.00"), "")}  # the masked value: its default
    with Session_() as session, pytest.raises(RevertConflict, match="created again"):
        auditlog.revert(session, delete.id)
    with Session_.begin() as session:
        auditlog.revert(session, entries(engine)[-1].id)  # the re-creation
    assert ledgers(engine) == {}


def test_a_masked_change_cannot_be_restored_unless_forced(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with Session_.begin() as session:
        ledger = session.get_one(Ledger, 1)
        ledger.secret, ledger.owner = "new pin", "cy"
    change = entries(engine)[-1].id
    with Session_() as session, pytest.raises(RevertError, match=r"masked attributes .*secret"):
        auditlog.revert(session, change)
    with Session_.begin() as session:
        auditlog.revert(session, change, force=True)
    assert ledgers(engine) == {1: ("bob", Decimal("20.00"), "new pin")}


def test_a_required_attribute_that_was_not_recorded_is_a_clear_error(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Ledger, exclude={"owner"})
    with Session_.begin() as session:
        session.add(Ledger(key=4, owner="dee"))
    with Session_.begin() as session:
        session.delete(session.get_one(Ledger, 4))
    with Session_() as session, pytest.raises(RevertError, match=r"Ledger\.owner is required"):
        auditlog.revert(session, entries(engine)[-1].id)


def test_a_change_of_key_is_reverted(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Membership)
    with Session_.begin() as session:
        session.add(Membership(org="acme", member=1, role="dev"))
    with Session_.begin() as session:
        session.get_one(Membership, ("acme", 1)).member = 2
    with Session_.begin() as session:
        auditlog.revert(session, entries(engine)[-1].id)
    with Session_() as session:
        assert [m.member for m in session.scalars(sa.select(Membership))] == [1]


def test_reverting_a_transaction_undoes_every_change_it_made(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    for model in (Pet, Customer, Loan):
        auditlog.register(model)
    with Session_.begin() as session:
        session.add(Parrot(id=8, name="Polly", secret="x"))
    with Session_.begin() as session:  # one request: several objects, several paths
        ledger = session.get_one(Ledger, 1)
        ledger.owner, ledger.balance = "eve", Decimal("99.00")
        session.add(Ledger(key=5, owner="new"))
        session.execute(sa.update(Pet).values(name="renamed"))
        session.delete(session.get_one(Parrot, 8))
    txid = entries(engine)[-1].transaction_id
    assert txid is not None
    with auditlog.audit_context(user_id="ops"), Session_.begin() as session:
        restored = auditlog.revert_transaction(session, txid)
    assert len(restored) == 2
    assert ledgers(engine) == {1: ("bob", Decimal("20.00"), "pin")}
    with Session_() as session:
        (parrot,) = session.scalars(sa.select(Parrot)).all()
        assert (parrot.id, parrot.name) == (8, "Polly")
    undo = [e for e in entries(engine) if e.extra == {"reverts_transaction": txid}]
    assert len(undo) == 4 and {e.user_id for e in undo} == {"ops"}


def test_a_transaction_with_later_changes_is_refused_before_anything_changes(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    txid = entries(engine)[1].transaction_id
    assert txid is not None
    with Session_.begin() as session:
        session.get_one(Ledger, 1).balance = Decimal("1.00")
    with Session_() as session, pytest.raises(RevertConflict, match="balance"):
        auditlog.revert_transaction(session, txid)
    assert ledgers(engine)[1][1] == Decimal("1.00")


def test_unknown_entries_and_access_entries_are_refused(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with Session_() as session:
        with pytest.raises(RevertError, match="no audit entry"):
            auditlog.revert(session, "01JQ8RREEM71MEZJXNECGE0ATA")
        access = auditlog.log_access(session, session.get_one(Ledger, 1))
        with pytest.raises(RevertError, match="access"):
            auditlog.revert(session, access)
        with pytest.raises(RevertError, match="no change was recorded"):
            auditlog.revert_transaction(session, "01JQ8RREEM71MEZJXNECGE0ATA")
        for bad in ("not-a-ulid", "", "01JQ8RREEM71MEZJXNECGE0AT"):
            with pytest.raises(RevertError, match=rf"entry_id: '{bad}' is not an entry id"):
                auditlog.revert(session, bad)
            with pytest.raises(RevertError, match=r"transaction_id: .* is not an entry id"):
                auditlog.revert_transaction(session, bad)


def test_an_id_in_lowercase_is_reverted_and_recorded_in_its_canonical_form(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    with Session_() as session:
        auditlog.revert(session, history[-1].lower())
        session.commit()
    newest = entries(engine)[-1]
    assert newest.extra["reverts"] == history[-1]


def test_a_collection_change_is_reverted_from_the_ids_it_recorded(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Customer)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="Ada", loans=[Loan(amount=Decimal("1"))]))
    with Session_.begin() as session:
        ada = session.get_one(Customer, 1)
        ada.loans.append(Loan(amount=Decimal("2")))
    change = entries(engine)[-1]
    assert change.changed_fields == ["loans"]
    with Session_.begin() as session:
        customer = auditlog.revert(session, change.id)
        assert [loan.amount for loan in customer.loans] == [Decimal("1")]
    with Session_() as session:
        orphans = session.scalars(sa.select(Loan).where(Loan.customer_id.is_(None))).all()
        assert [loan.amount for loan in orphans] == [Decimal("2")]


def test_an_entry_whose_json_is_not_json_is_refused_naming_it(
    engine: Engine, Session_: sessionmaker[Session], history: list[str]
) -> None:
    """Reverting reads the entry and every later one of its object: text that is not JSON in
    any of them (SQLite and MariaDB keep JSON as text) is refused, and nothing changes."""
    if engine.dialect.name == "postgresql":
        pytest.skip("jsonb refuses text that is not JSON when it is written")
    _, raised, renamed = history
    store_text(engine, renamed, "changed_fields", '["owner"')
    with Session_() as session:
        with pytest.raises(RevertError, match=rf"entry {renamed}: its changed_fields is not JSON"):
            auditlog.revert(session, raised)  # a later entry cannot be read
        with pytest.raises(RevertError, match=rf"entry {renamed}: its changed_fields is not JSON"):
            auditlog.revert(session, renamed)
        assert not session.dirty and not session.new and not session.deleted
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(auditlog.AuditLog)) == 3
