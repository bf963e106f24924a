"""Bulk statements and unit-of-work changes racing on the same rows: the log replays to the data."""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from ..models import Customer

ROWS = 12
THREADS = 6
TRANSACTIONS = 60


def _retrying(maker: sessionmaker[Session], work: Any) -> None:
    """Run one transaction, again when the database picked it as a deadlock victim."""
    for _ in range(20):
        try:
            with maker.begin() as session:
                work(session)
            return
        except sa.exc.OperationalError as exc:  # deadlock or lock timeout: the app retries
            if "deadlock" not in str(exc).lower() and "lock wait" not in str(exc).lower():
                raise
        except sa.exc.IntegrityError:
            # delete-then-recreate racing itself: on PostgreSQL the later DELETE skips the row
            # the earlier transaction re-inserted, and its INSERT then collides; the app retries
            continue
        except auditlog.CaptureError as exc:  # rows appeared between the read and the write
            if "appeared" not in str(exc):
                raise
    raise AssertionError("a transaction kept deadlocking")


def _worker(
    maker: sessionmaker[Session], n: int, ids: list[int], errors: list[BaseException]
) -> None:
    rng = random.Random(1000 + n)
    try:
        with auditlog.audit_context(user_id=f"worker-{n}"):
            for i in range(TRANSACTIONS):
                choice = rng.random()
                target = rng.choice(ids)
                if choice < 0.35:  # unit of work, reading the row under lock like a careful app

                    def uow(session: Session, target: int = target, i: int = i) -> None:
                        row = session.get(Customer, target, with_for_update=True)
                        if row is not None:
                            row.name = f"uow-{n}-{i}"
                            row.email = f"{n}.{i}@uow"

                    _retrying(maker, uow)
                elif choice < 0.7:  # bulk UPDATE over several rows
                    subset = sorted(rng.sample(ids, 3))

                    def bulk(session: Session, subset: list[int] = subset, i: int = i) -> None:
                        session.execute(
                            sa.update(Customer)
                            .where(Customer.id.in_(subset))
                            .values(email=f"{n}.{i}@bulk", notes=Customer.name)
                        )

                    _retrying(maker, bulk)
                elif choice < 0.8:  # bulk UPDATE by primary key

                    def by_pk(session: Session, target: int = target, i: int = i) -> None:
                        session.execute(
                            sa.update(Customer), [{"id": target, "name": f"pk-{n}-{i}"}]
                        )

                    _retrying(maker, by_pk)
                elif choice < 0.9:  # delete then re-create the row under the same key

                    def recreate(session: Session, target: int = target, i: int = i) -> None:
                        session.execute(sa.delete(Customer).where(Customer.id == target))
                        session.add(Customer(id=target, name=f"new-{n}-{i}"))

                    _retrying(maker, recreate)
                else:  # a change that is rolled back
                    with maker() as session:
                        # a deadlock victim is rolled back all the same
                        with contextlib.suppress(sa.exc.OperationalError, auditlog.CaptureError):
                            session.execute(sa.update(Customer).values(name="rolled back"))
                        session.rollback()
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_bulk_and_unit_of_work_racing_on_the_same_rows(engine: Engine) -> None:
    auditlog.register(Customer)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    with maker.begin() as session:
        rows = [Customer(name=f"start-{i}") for i in range(ROWS)]
        session.add_all(rows)
    ids = [r.id for r in rows]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_worker, args=(maker, n, ids, errors)) for n in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    # Replay: every entry starts from the state the previous one left, and the last one is the row.
    # (Collections such as "loans" appear only in the entries that change them: compare columns.)
    def columns(state: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if state is None else {k: v for k, v in state.items() if k != "loans"}

    last: dict[str, dict[str, Any] | None] = {}
    log = entries(engine)
    for e in log:
        if e.object_id in last:
            assert columns(e.before_state) == last[e.object_id], "\n".join(
                f"{x.timestamp.isoformat()} {x.id} {x.action_type} {x.user_id} "
                f"{x.before_state and x.before_state['name']} -> {x.after_state and x.after_state['name']}"
                for x in log
                if x.object_id == e.object_id
            )
        last[e.object_id] = columns(e.after_state)
    with maker() as session:
        for customer in session.scalars(sa.select(Customer)):
            state = last[str(customer.id)]
            assert state is not None
            assert state["name"] == customer.name
            assert state["email"] == customer.email
            assert state["notes"] == customer.notes
    assert not any(e.after_state and e.after_state["name"] == "rolled back" for e in log)
    assert len(log) > THREADS * TRANSACTIONS // 2
