"""Sealing and verifying on every backend: an intact log passes, every kind of tampering is named."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ContentType
from auditlog.integrity import ErasureError, seal_entry_table, seal_table

from ..helpers import entries
from ..models import Customer, Tag

LOG = AuditLog.__table__


def write_tags(maker: sessionmaker[Session], n: int, start: int = 1) -> None:
    auditlog.register(Tag)
    for i in range(start, start + n):
        with maker.begin() as session:
            session.add(Tag(id=i, label=f"tag {i}"))


def kinds(report: auditlog.VerifyReport) -> list[tuple[str, str | None, int | None]]:
    return sorted((p.kind, p.entry_id, p.seal) for p in report.problems)


def change(engine: Engine, entry_id: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).where(LOG.c.id == entry_id).values(**values))


def members(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(seal_entry_table.c.entry_id, seal_entry_table.c.seal_seq))
        return {row.entry_id: row.seal_seq for row in rows}


def test_a_sealed_log_verifies_and_each_entry_is_in_one_seal(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 5)
    assert auditlog.verify(engine).unsealed == [e.id for e in entries(engine)]
    first = auditlog.seal(engine, batch=2)
    assert (first.seals, first.entries) == (3, 5)
    assert first.head is not None and first.head.startswith("3:") and len(first.head) == 66
    report = auditlog.verify(engine, head=first.head)
    assert report.intact and report.problems == []
    assert (report.seals, report.sealed, report.unsealed, report.head) == (3, 5, [], first.head)
    assert sorted(members(engine)) == sorted(e.id for e in entries(engine))

    again = auditlog.seal(engine)  # nothing new: no seal, the same head
    assert (again.seals, again.entries, again.head) == (0, 0, first.head)
    write_tags(Session_, 1, start=10)
    later = auditlog.seal(engine)
    assert (later.seals, later.entries) == (1, 1) and later.head != first.head
    # a head published earlier still checks the longer log
    assert auditlog.verify(engine, head=first.head).intact
    assert auditlog.verify(engine, head=later.head).intact


def _another_content_type(engine: Engine) -> int:
    with engine.begin() as conn:
        conn.execute(sa.insert(ContentType.__table__).values(name="elsewhere.Forged"))
        return int(
            conn.execute(
                sa.select(ContentType.id).where(ContentType.name == "elsewhere.Forged")
            ).scalar_one()
        )


CHANGES: dict[str, Any] = {
    "tenant_id": "another-tenant",
    "user_id": "mallory",
    "action_type": "delete",
    "timestamp": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
    "ip_address": "198.51.100.66",
    "user_agent": "curl/8",
    "object_id": "999",
    "content_type": None,  # another model's id, made in the test
    "before_state": {"id": 2, "label": "forged"},
    "after_state": {"id": 2, "label": "tag 2 "},
    "changed_fields": ["label"],
    "transaction_id": str(ULID()),
    "extra": {"reason": "forged"},
    "renamed_to": "3",
}


@pytest.mark.parametrize("column", list(CHANGES))
def test_a_change_to_any_column_of_a_sealed_entry_is_named(
    engine: Engine, Session_: sessionmaker[Session], column: str
) -> None:
    write_tags(Session_, 3)
    auditlog.seal(engine)
    target = entries(engine)[1].id
    value = CHANGES[column] if column != "content_type" else _another_content_type(engine)
    change(engine, target, **{column: value})
    report = auditlog.verify(engine)
    assert not report.intact
    assert kinds(report) == [("entry_changed", target, 1)]


def test_an_entry_given_another_id_is_removed_and_unsealed(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 2)
    auditlog.seal(engine)
    old = entries(engine)[0].id
    new = str(ULID.from_datetime(entries(engine)[0].timestamp))
    change(engine, old, id=new)
    report = auditlog.verify(engine)
    assert kinds(report) == [("entry_removed", old, 1)]
    assert report.unsealed == [new]


def test_a_deleted_entry_is_named(engine: Engine, Session_: sessionmaker[Session]) -> None:
    write_tags(Session_, 3)
    auditlog.seal(engine)
    gone = entries(engine)[2].id
    with engine.begin() as conn:
        conn.execute(sa.delete(LOG).where(LOG.c.id == gone))
    assert kinds(auditlog.verify(engine)) == [("entry_removed", gone, 1)]


def test_two_entries_swapped_are_both_named(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 2)
    auditlog.seal(engine)
    a, b = entries(engine)
    change(engine, a.id, after_state=b.after_state, object_id=b.object_id)
    change(engine, b.id, after_state=a.after_state, object_id=a.object_id)
    assert kinds(auditlog.verify(engine)) == [
        ("entry_changed", a.id, 1),
        ("entry_changed", b.id, 1),
    ]


def _forge(engine: Engine, at: dt.datetime) -> str:
    """An entry inserted by hand, the way someone with write access would."""
    sample = entries(engine)[0]
    forged = str(ULID.from_datetime(at))
    with engine.begin() as conn:
        conn.execute(
            sa.insert(LOG).values(
                id=forged,
                tenant_id=None,
                user_id="mallory",
                action_type="delete",
                timestamp=at,
                ip_address=None,
                user_agent="",
                object_id="1",
                content_type=sample.content_type,
                before_state={"id": 1, "label": "tag 1"},
                after_state=None,
                changed_fields=None,
                transaction_id=None,
                extra=None,
                renamed_to=None,
            )
        )
    return forged


def test_an_entry_forged_among_sealed_ones_is_named(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 2)
    auditlog.seal(engine)
    old = _forge(engine, entries(engine)[0].timestamp - dt.timedelta(hours=2))
    report = auditlog.verify(engine)
    assert kinds(report) == [("entry_inserted", old, None)]
    assert report.unsealed == [old]
    # one as recent as a long transaction's is only not sealed yet
    assert kinds(auditlog.verify(engine, late=dt.timedelta(hours=3))) == []


def test_the_next_seal_does_not_make_a_forged_old_entry_look_genuine(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A seal takes the entries in no seal from ``late`` before the newest seal on: one inserted
    among older sealed entries stays unsealed and named; one that committed late is sealed."""
    write_tags(Session_, 2)
    auditlog.seal(engine)
    newest = entries(engine)[-1].timestamp
    old = _forge(engine, newest - dt.timedelta(hours=2))
    late = _forge(engine, newest - dt.timedelta(minutes=20))  # a long transaction's entry
    write_tags(Session_, 1, start=3)
    again = auditlog.seal(engine)
    assert again.entries == 2  # the late one and tag 3
    assert old not in members(engine) and late in members(engine)
    report = auditlog.verify(engine)
    assert kinds(report) == [("entry_inserted", old, None)] and report.unsealed == [old]
    assert auditlog.seal(engine).entries == 0  # every later run leaves it too
    assert kinds(auditlog.verify(engine)) == [("entry_inserted", old, None)]
    # with a longer allowance on both sides, it is a late commit: sealed, and the log intact
    assert auditlog.seal(engine, late=dt.timedelta(hours=3)).entries == 1
    assert auditlog.verify(engine, late=dt.timedelta(hours=3)).intact


@pytest.mark.parametrize("late", [dt.timedelta(seconds=-1), 3600, None])
def test_seal_names_a_bad_late(engine: Engine, late: Any) -> None:
    with pytest.raises(ValueError, match="late must be a timedelta of 0 or more"):
        auditlog.seal(engine, late=late)


def test_an_entry_slipped_into_a_seal_is_named(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 2)
    auditlog.seal(engine)
    forged = _forge(engine, entries(engine)[0].timestamp)
    with engine.begin() as conn:  # a member row with a digest made up for it
        conn.execute(
            sa.insert(seal_entry_table).values(
                entry_id=forged, seal_seq=1, entry_key="00" * 16, digest="ab" * 32
            )
        )
    assert kinds(auditlog.verify(engine)) == [
        ("entry_changed", forged, 1),
        ("seal_entries_changed", None, 1),
    ]


def test_entries_moved_between_seals_are_named(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 4)
    auditlog.seal(engine, batch=2)
    first, _, third, _ = entries(engine)
    with engine.begin() as conn:
        for entry_id, seq in ((first.id, 2), (third.id, 1)):
            conn.execute(
                sa.update(seal_entry_table)
                .where(seal_entry_table.c.entry_id == entry_id)
                .values(seal_seq=seq)
            )
    assert kinds(auditlog.verify(engine)) == [
        ("seal_entries_changed", None, 1),
        ("seal_entries_changed", None, 2),
    ]


@pytest.mark.parametrize("column", ["sealed_at", "entries", "entries_digest", "previous", "digest"])
def test_a_changed_seal_is_named(
    engine: Engine, Session_: sessionmaker[Session], column: str
) -> None:
    write_tags(Session_, 3)
    auditlog.seal(engine, batch=1)
    values: dict[str, Any] = {
        "sealed_at": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
        "entries": 2,
        "entries_digest": "0" * 64,
        "previous": "1" * 64,
        "digest": "2" * 64,
    }
    with engine.begin() as conn:
        conn.execute(
            sa.update(seal_table).where(seal_table.c.seq == 2).values({column: values[column]})
        )
    found = {kind for kind, _, _ in kinds(auditlog.verify(engine))}
    expected = {
        "sealed_at": {"seal_changed"},
        "entries": {"seal_changed", "seal_entries_changed"},
        "entries_digest": {"seal_changed", "seal_entries_changed"},
        "previous": {"seal_changed", "chain_broken"},
        "digest": {"seal_changed", "chain_broken"},  # seal 3 no longer follows it
    }
    assert found == expected[column]


def test_a_dropped_seal_is_named(engine: Engine, Session_: sessionmaker[Session]) -> None:
    write_tags(Session_, 3)
    auditlog.seal(engine, batch=1)
    with engine.begin() as conn:
        conn.execute(sa.delete(seal_table).where(seal_table.c.seq == 2))
    assert kinds(auditlog.verify(engine)) == [("seal_removed", None, 2)]


def test_a_seal_renumbered_far_ahead_is_one_gap(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """A gap of two billion seal numbers is one problem, found at once (not one per number)."""
    write_tags(Session_, 3)
    auditlog.seal(engine, batch=1)
    far = 2**31 - 1
    with engine.begin() as conn:
        conn.execute(sa.update(seal_table).where(seal_table.c.seq == 3).values(seq=far))
    report = auditlog.verify(engine)
    assert kinds(report) == [
        ("seal_changed", None, far),
        ("seal_entries_changed", None, far),
        ("seal_removed", None, 3),
    ]
    gap = next(p for p in report.problems if p.kind == "seal_removed")
    assert gap.detail == f"seals 3 to {far - 1} are missing ({far - 3} seals)"
    assert report.seals == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("entry_key", None),  # no key and no erasure record
        ("entry_key", "zz" * 16),  # not hex
        ("entry_key", "ab" * 8),  # too short
        ("erased", "{}"),  # an erasure record without its keys (the key dropped with it)
        ("erased", "not json"),
        ("erased", '["keys"]'),
        ("digest", "x" * 64),
    ],
)
def test_an_edited_seal_record_of_an_entry_is_named_not_a_crash(
    engine: Engine, Session_: sessionmaker[Session], column: str, value: Any
) -> None:
    with auditlog.audit_context(user_id="ada"):
        write_tags(Session_, 2)
    auditlog.seal(engine)
    target = entries(engine)[0].id
    values = {column: value}
    if column == "erased":
        values["entry_key"] = None
    with engine.begin() as conn:
        conn.execute(
            sa.update(seal_entry_table).where(seal_entry_table.c.entry_id == target).values(values)
        )
    expected = [("entry_changed", target, 1)]
    if column == "digest":
        expected.append(("seal_entries_changed", None, 1))
    assert kinds(auditlog.verify(engine)) == expected
    with pytest.raises(ErasureError, match=f"entry {target} is not as sealed"):
        auditlog.erase(engine, user_id="ada")


def test_truncated_newest_seals_are_caught_by_the_published_head(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 4)
    head = auditlog.seal(engine, batch=1).head
    assert head is not None
    newest = [e.id for e in entries(engine)][-2:]
    with engine.begin() as conn:  # the last two seals, their members and their entries
        conn.execute(sa.delete(seal_table).where(seal_table.c.seq > 2))
        conn.execute(sa.delete(seal_entry_table).where(seal_entry_table.c.seal_seq > 2))
        conn.execute(sa.delete(LOG).where(LOG.c.id.in_(newest)))
    assert auditlog.verify(engine).intact  # consistent in itself: only the head can tell
    assert kinds(auditlog.verify(engine, head=head)) == [("head_missing", None, 4)]


def test_a_log_rewritten_and_sealed_again_is_caught_by_the_published_head(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write_tags(Session_, 2)
    head = auditlog.seal(engine).head
    assert head is not None
    with engine.begin() as conn:
        conn.execute(seal_entry_table.delete())
        conn.execute(seal_table.delete())
    change(engine, entries(engine)[0].id, user_id="mallory")
    assert auditlog.seal(engine).head != head
    assert auditlog.verify(engine).intact
    assert kinds(auditlog.verify(engine, head=head)) == [("head_mismatch", None, 1)]


def test_a_tenant_proves_its_own_entries(engine: Engine, Session_: sessionmaker[Session]) -> None:
    auditlog.register(Customer)
    for tenant in ("acme", "globex"):
        with auditlog.audit_context(tenant_id=tenant), Session_.begin() as session:
            session.add(Customer(name=f"{tenant} customer", tenant_id=tenant))
    auditlog.seal(engine)
    theirs = entries(engine, tenant_id="globex")[0].id
    change(engine, theirs, user_id="mallory")
    assert auditlog.verify(engine, tenant_id="acme").intact  # acme's entries are as sealed
    assert kinds(auditlog.verify(engine, tenant_id="globex")) == [("entry_changed", theirs, 1)]


def test_a_bad_head_is_refused_with_its_form(engine: Engine) -> None:
    with pytest.raises(ValueError, match="not a published head"):
        auditlog.verify(engine, head="12:xyz")
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        auditlog.seal(engine, batch=0)


def test_sealing_needs_a_connection_outside_a_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        with pytest.raises(ValueError, match="inside a transaction"):
            auditlog.seal(conn)
        conn.rollback()
        assert auditlog.seal(conn).seals == 0


WRITERS = 4
TRANSACTIONS = 15


def test_entries_committing_out_of_order_while_sealing_are_each_sealed_once(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Long transactions commit entries older than ones already sealed; a sealer runs every few
    milliseconds meanwhile. None may be skipped, none sealed twice."""
    auditlog.register(Tag)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(TRANSACTIONS):
                with Session_.begin() as session:
                    session.add(
                        Tag(id=n * 1000 + i + 1, label=f"w{n} t{i}")
                    )  # 0 is "next" on MariaDB
                    session.flush()  # the entry's id and time are taken now...
                    time.sleep(rng.uniform(0, 0.03))  # ...and it commits later
        except BaseException as exc:
            errors.append(exc)

    def sealer() -> None:
        try:
            while not done.is_set():
                auditlog.seal(engine, batch=7)
                time.sleep(0.003)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    sealing = threading.Thread(target=sealer)
    sealing.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sealing.join()
    assert errors == []
    final = auditlog.seal(engine)
    report = auditlog.verify(engine, head=final.head)
    assert report.problems == [] and report.unsealed == []
    logged = [e.id for e in entries(engine)]
    assert len(logged) == WRITERS * TRANSACTIONS
    assert report.sealed == len(logged) and sorted(members(engine)) == sorted(logged)
    assert report.seals > 1


def test_two_sealers_at_once_seal_each_entry_once(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Each run reads its next seal's entries ahead (on PostgreSQL) while writing the current
    one; another sealer may take them meanwhile. Neither skips nor repeats an entry."""
    write_tags(Session_, 60)
    errors: list[BaseException] = []

    def sealer() -> None:
        try:
            for _ in range(5):
                auditlog.seal(engine, batch=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sealer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = auditlog.verify(engine)
    assert report.problems == [] and report.unsealed == [] and report.sealed == 60
    assert sorted(members(engine)) == sorted(e.id for e in entries(engine))


def test_a_pool_of_one_connection_seals_reading_in_line(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Reading the next seal's entries ahead takes a second connection: never from a pool that
    has none to spare (it would wait for the pool's timeout at every seal)."""
    from auditlog.integrity.seal import _spare_connection

    write_tags(Session_, 5)
    small = sa.create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=30)
    try:
        with small.connect():
            assert not _spare_connection(small)
        with engine.connect():
            assert _spare_connection(engine)
        result = auditlog.seal(small, batch=2)
        assert (result.seals, result.entries) == (3, 5)
        assert auditlog.verify(small).intact
    finally:
        small.dispose()
