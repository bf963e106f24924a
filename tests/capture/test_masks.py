"""A masked value never reaches the audit tables in clear, on any write path."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import MASKED, ConfigurationError

from ..helpers import entries
from ..models import Customer, Parrot, Pet, Truck, Vehicle

SECRET = "polly-wants-a-secret"


def _nothing_in_clear(engine: Engine, *secrets: str) -> None:
    """No column of any entry holds one of ``secrets``."""
    for entry in entries(engine):
        stored = json.dumps(
            [entry.object_id, entry.before_state, entry.after_state, entry.extra], default=str
        )
        for secret in secrets:
            assert secret not in stored, (entry.action_type, stored)


def _parrot(maker: sessionmaker[Session]) -> int:
    with maker.begin() as session:
        bird = Parrot(name="Polly", secret=SECRET)
        session.add(bird)
        session.add(Pet(id=100, name="Rex"))
        session.flush()
        return bird.id


STATEMENTS = {
    "orm update on the base": lambda s, i: s.execute(
        sa.update(Pet).where(Pet.id == i).values(name="Pol")
    ),
    "core update on the table": lambda s, i: s.execute(
        Pet.__table__.update().where(Pet.__table__.c.id == i).values(secret="new " + SECRET)
    ),
    "orm delete on the base": lambda s, i: s.execute(sa.delete(Pet).where(Pet.id == i)),
    "core delete on the table": lambda s, i: s.connection().execute(
        Pet.__table__.delete().where(Pet.__table__.c.id == i)
    ),
}


@pytest.mark.parametrize("statement", STATEMENTS.values(), ids=STATEMENTS.keys())
def test_a_subclass_mask_holds_in_statements_on_its_single_table_base(
    engine: Engine, Session_: sessionmaker[Session], statement: object
) -> None:
    auditlog.register(Pet)
    auditlog.register(Parrot, mask={"secret"})
    bird = _parrot(Session_)
    with Session_.begin() as session:
        statement(session, bird)  # type: ignore[operator]
    _nothing_in_clear(engine, SECRET)
    last = entries(engine)[-1]
    with Session_() as session:
        names = dict(
            session.execute(sa.select(auditlog.ContentType.id, auditlog.ContentType.name)).all()
        )
    assert names[last.content_type].endswith(".Parrot")  # recorded as what the row is
    state = last.after_state or last.before_state
    assert state is not None and state["secret"] == MASKED


def test_rows_of_a_registered_subclass_are_captured_through_an_unregistered_base(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Parrot, mask={"secret"})
    bird = _parrot(Session_)
    with Session_.begin() as session:
        session.execute(sa.update(Pet).values(name="renamed"))
    updates = [e for e in entries(engine) if e.action_type == "update"]
    assert [e.object_id for e in updates] == [str(bird)]  # the plain Pet is not audited
    assert updates[0].after_state is not None
    assert updates[0].after_state["name"] == "renamed"
    _nothing_in_clear(engine, SECRET)


def test_a_subclass_registration_adds_to_its_parents_options(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    auditlog.register(Vehicle, mask={"wheels"})
    auditlog.register(Truck, exclude={"payload_kg"})
    with Session_.begin() as session:
        session.add(Truck(wheels=18, payload_kg=4000))
    (entry,) = entries(engine)
    assert entry.after_state == {"id": entry.after_state["id"], "kind": "truck", "wheels": MASKED}


def test_a_joined_subclass_mask_holds_in_statements_on_its_base(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Rows of a joined subclass are recorded under the base, with the subclass's masks."""
    auditlog.register(Vehicle)
    auditlog.register(Truck, mask={"wheels"})
    with Session_.begin() as session:
        session.add(Truck(id=7, wheels=18))
        session.add(Vehicle(id=8, wheels=4))
    with Session_.begin() as session:
        session.execute(sa.update(Vehicle).values(wheels=sa.literal(6)))
    updates = {e.object_id: e for e in entries(engine) if e.action_type == "update"}
    assert updates["7"].after_state is not None and updates["7"].after_state["wheels"] == MASKED
    assert updates["8"].after_state is not None and updates["8"].after_state["wheels"] == 6


def test_a_masked_primary_key_is_refused_at_registration() -> None:
    with pytest.raises(ConfigurationError, match="cannot mask the primary key 'id'"):
        auditlog.register(Customer, mask={"id"})
    assert not auditlog.is_registered(Customer)
