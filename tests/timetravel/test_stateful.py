"""Random histories: at every checkpoint, every object's state as of then is the row it was.

A hypothesis state machine creates, updates, deletes, re-keys and bulk-updates ledgers, one
transaction per step, and keeps the table as it was after each step. At the end, for every
checkpoint and every key ever used, ``state_as_of`` must equal that row (or be None where there
was none). Reverting the newest entry of an object, or the newest transaction, must give back
the rows as they were before it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import AuditLog

from ..models import Ledger

KEYS = st.integers(min_value=1, max_value=8)
OWNERS = st.sampled_from(["ada", "bob", "cy", "dee"])
AMOUNTS = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False)
Rows = dict[int, dict[str, Any]]


def _rows(maker: sessionmaker[Session]) -> Rows:
    with maker() as session:
        return {
            x.key: {"key": x.key, "owner": x.owner, "balance": f"{x.balance:.2f}", "data": x.data,
                    "secret": x.secret}
            for x in session.scalars(sa.select(Ledger))
        }  # fmt: skip


def _history_machine(engine: Engine, maker: sessionmaker[Session]) -> type[RuleBasedStateMachine]:
    class Histories(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with engine.begin() as conn:
                conn.execute(Ledger.__table__.delete())
                conn.execute(AuditLog.__table__.delete())
            self.checkpoints: list[tuple[str, Rows]] = []
            self.used: set[int] = set()

        def keys(self) -> list[int]:
            return sorted(_rows(maker))

        def step(self, work: Any) -> None:
            with maker.begin() as session:
                work(session)
            with maker() as session:
                last = session.scalar(sa.select(AuditLog.id).order_by(AuditLog.id.desc()))
            if last is not None and (not self.checkpoints or last != self.checkpoints[-1][0]):
                self.checkpoints.append((last, _rows(maker)))  # a step that changed something

        @rule(key=KEYS, owner=OWNERS, amount=AMOUNTS)
        def create(self, key: int, owner: str, amount: Decimal) -> None:
            if key in self.keys():
                return
            self.used.add(key)
            self.step(
                lambda s: s.add(Ledger(key=key, owner=owner, balance=amount, data={"n": key}))
            )

        @precondition(lambda self: self.keys())
        @rule(data=st.data(), owner=OWNERS, amount=AMOUNTS)
        def update(self, data: st.DataObject, owner: str, amount: Decimal) -> None:
            key = data.draw(st.sampled_from(self.keys()))

            def work(s: Session) -> None:
                ledger = s.get_one(Ledger, key)
                ledger.owner, ledger.balance = owner, amount
                ledger.data = {**ledger.data, "seen": owner}

            self.step(work)

        @precondition(lambda self: self.keys())
        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(self.keys()))
            self.step(lambda s: s.delete(s.get_one(Ledger, key)))

        @precondition(lambda self: self.keys())
        @rule(data=st.data(), new=KEYS)
        def rekey(self, data: st.DataObject, new: int) -> None:
            key = data.draw(st.sampled_from(self.keys()))
            if new in self.keys():
                return
            self.used.add(new)
            self.step(lambda s: setattr(s.get_one(Ledger, key), "key", new))

        @precondition(lambda self: len(self.keys()) > 1)
        @rule(owner=OWNERS)
        def bulk_update(self, owner: str) -> None:
            keys = self.keys()[::2]
            self.step(
                lambda s: s.execute(
                    sa.update(Ledger).where(Ledger.key.in_(keys)).values(owner=owner)
                )
            )

        @precondition(lambda self: self.checkpoints)
        @rule(data=st.data())
        def revert_newest(self, data: st.DataObject) -> None:
            """Revert the newest entry of one object, or the newest transaction."""
            before = self.checkpoints[-2][1] if len(self.checkpoints) > 1 else {}
            with maker() as session:
                newest = session.scalars(sa.select(AuditLog).order_by(AuditLog.id.desc())).first()
                assert newest is not None
                txid, entry_id = newest.transaction_id, newest.id
                in_newest = session.scalars(
                    sa.select(AuditLog.id).where(AuditLog.transaction_id == txid)
                ).all()
            if (data.draw(st.booleans()) and len(in_newest) == 1) or len(in_newest) == 1:
                self.step(lambda s: auditlog.revert(s, entry_id))
            else:
                assert txid is not None
                self.step(lambda s: auditlog.revert_transaction(s, txid))
            assert self.checkpoints[-1][1] == before

        def teardown(self) -> None:
            with maker() as session:
                for at, rows in self.checkpoints:
                    for key in self.used:
                        found = auditlog.state_as_of(session, Ledger, key, at)
                        assert found == rows.get(key), (at, key, found, rows.get(key))

    return Histories


def test_random_histories_are_told_back_exactly(engine: Engine) -> None:
    auditlog.register(Ledger)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    run_state_machine_as_test(
        _history_machine(engine, maker),
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
