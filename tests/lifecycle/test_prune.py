"""Retention on every backend: prune removes exactly the old entries, in batches, resumably, and
verify tells pruned entries from removed ones."""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ContentType
from auditlog.cli import main
from auditlog.integrity import maintenance
from auditlog.lifecycle import PruneProgress, prune_entry_table, prune_table
from auditlog.lifecycle.partitions import create_partitions, list_partitions

from ..helpers import date_back, entries
from ..models import Tag
from .test_partitions import _insert, _server, pg  # noqa: F401  (fixtures)

LOG = AuditLog.__table__
JAN = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def write(maker: sessionmaker[Session], tenants: list[str | None], start: int = 1) -> None:
    """One tag created per tenant given, each in its own transaction."""
    auditlog.register(Tag)
    for i, tenant in enumerate(tenants, start):
        with auditlog.audit_context(tenant_id=tenant, user_id="ada"), maker.begin() as session:
            session.add(Tag(id=i, label=f"tag {i}"))


def remaining(engine: Engine) -> list[str]:
    return [e.id for e in entries(engine)]


def test_prune_removes_exactly_the_entries_older_than_before(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme"] * 10)
    dated = date_back(engine, JAN, dt.timedelta(days=1))
    cut = JAN + dt.timedelta(days=4)  # days 0-3 go, day 4 stays
    result = auditlog.prune(engine, before=cut, reason="retention 4 days")
    assert (result.deleted, result.sealed, result.partitions) == (4, 0, ())
    assert sorted(remaining(engine)) == sorted(i for i, _ in dated[4:])
    with engine.connect() as conn:
        row = conn.execute(sa.select(prune_table)).one()
    assert (row.kind, row.entries, row.sealed, row.tenant_id) == ("prune", 4, 0, None)
    assert row.pruned_before == cut and row.finished_at is not None
    assert row.reason == "retention 4 days"
    # nothing older is left: a second run removes nothing and says so
    assert auditlog.prune(engine, before=cut).deleted == 0


def test_before_counts_to_the_millisecond(engine: Engine, Session_: sessionmaker[Session]) -> None:
    write(Session_, ["acme"] * 2)
    (_, _), (second_id, second) = date_back(engine, JAN, dt.timedelta(milliseconds=1))
    # within the second entry's millisecond: truncated to it, so the second stays
    result = auditlog.prune(engine, before=second + dt.timedelta(microseconds=999))
    assert (result.deleted, result.before) == (1, second)
    assert remaining(engine) == [second_id]


def test_prune_works_in_batches_and_reports_progress(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme"] * 10)
    dated = date_back(engine, JAN, dt.timedelta(hours=1))
    seen: list[PruneProgress] = []
    result = auditlog.prune(
        engine, before=JAN + dt.timedelta(days=1), batch_size=3, progress=seen.append
    )
    assert (result.deleted, result.batches) == (10, 4)
    assert [p.deleted for p in seen] == [3, 6, 9, 10]
    assert [p.batches for p in seen] == [1, 2, 3, 4]
    assert remaining(engine) == []
    assert len(dated) == 10


def test_a_tenant_prune_leaves_the_other_tenants(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme", "globex", None, "acme", "globex", "acme"])
    date_back(engine, JAN, dt.timedelta(days=1))
    result = auditlog.prune(engine, before=JAN + dt.timedelta(days=4), tenant_id="acme")
    assert result.deleted == 2  # acme's days 0 and 3; day 5 is newer
    assert sorted((e.tenant_id or "") for e in entries(engine)) == ["", "acme", "globex", "globex"]


def test_verify_reports_pruned_sealed_entries_as_pruned(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme", "globex"] * 5)
    dated = date_back(engine, JAN, dt.timedelta(days=1))
    head = auditlog.seal(engine, batch=4).head
    whole = auditlog.prune(engine, before=JAN + dt.timedelta(days=3))
    tenant = auditlog.prune(engine, before=JAN + dt.timedelta(days=7), tenant_id="globex")
    assert (whole.deleted, whole.sealed) == (3, 3)
    assert (tenant.deleted, tenant.sealed) == (2, 2)  # globex's days 3 and 5
    with engine.connect() as conn:
        listed = sorted(conn.execute(sa.select(prune_entry_table.c.entry_id)).scalars())
    assert listed == sorted([dated[3][0], dated[5][0]])
    report = auditlog.verify(engine, head=head)
    assert report.intact, report.problems
    assert (report.pruned, report.sealed, report.unsealed) == (5, 10, [])
    assert report.as_dict()["pruned"] == 5


def test_an_entry_removed_by_hand_is_still_named(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme", "globex"] * 3)
    dated = date_back(engine, JAN, dt.timedelta(days=1))
    auditlog.seal(engine)
    auditlog.prune(engine, before=JAN + dt.timedelta(days=2), tenant_id="acme")  # acme's day 0
    # globex's day 1 is older than that cutoff too, but no prune removed it
    with engine.begin() as conn:
        conn.execute(sa.delete(LOG).where(LOG.c.id == dated[1][0]))
        conn.execute(sa.delete(LOG).where(LOG.c.id == dated[4][0]))
    report = auditlog.verify(engine)
    assert sorted((p.kind, p.entry_id) for p in report.problems) == sorted(
        [("entry_removed", dated[1][0]), ("entry_removed", dated[4][0])]
    )
    assert report.pruned == 1


def test_an_interrupted_prune_keeps_whole_batches_and_runs_again(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme"] * 9)
    date_back(engine, JAN, dt.timedelta(hours=1))
    auditlog.seal(engine)

    def stop_after_two(progress: PruneProgress) -> None:
        if progress.batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        auditlog.prune(
            engine, before=JAN + dt.timedelta(days=1), batch_size=2, progress=stop_after_two
        )
    assert len(remaining(engine)) == 5
    with engine.connect() as conn:
        interrupted = conn.execute(sa.select(prune_table)).one()
    assert (interrupted.entries, interrupted.sealed, interrupted.finished_at) == (4, 4, None)
    again = auditlog.prune(engine, before=JAN + dt.timedelta(days=1), batch_size=2)
    assert (again.deleted, again.sealed) == (5, 5)
    report = auditlog.verify(engine)
    assert report.intact and report.pruned == 9


def test_prune_goes_past_the_guard_and_the_guard_stays(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, ["acme"] * 3)
    dated = date_back(engine, JAN, dt.timedelta(days=1))
    auditlog.protect(engine)
    try:
        assert auditlog.prune(engine, before=JAN + dt.timedelta(days=2)).deleted == 2
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.delete(LOG))
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.update(prune_table).values(entries=0))
        assert remaining(engine) == [dated[2][0]]
    finally:
        auditlog.unprotect(engine)


def test_writers_go_on_while_a_prune_runs(engine: Engine, Session_: sessionmaker[Session]) -> None:
    write(Session_, ["acme"] * 40)
    date_back(engine, JAN, dt.timedelta(minutes=1))
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            write(Session_, ["acme"] * 10, start=100)
        except BaseException as exc:  # reported below
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    result = auditlog.prune(engine, before=JAN + dt.timedelta(days=1), batch_size=5)
    thread.join()
    assert failures == []
    assert result.deleted == 40
    assert len(remaining(engine)) == 10  # every new entry kept


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"before": "2025-01-01"}, "before must be a datetime, not str"),
        ({"before": dt.datetime(2999, 1, 1)}, "is in the future"),
        ({"before": JAN, "batch_size": 0}, "batch_size must be an integer from 1"),
        ({"before": JAN, "batch_size": True}, "batch_size must be an integer from 1"),
        ({"before": JAN, "tenant_id": ""}, "tenant_id must be a non-empty string"),
        ({"before": JAN, "pause": -1}, "pause must be a number of seconds from 0 to 60"),
        ({"before": JAN, "pause": "1"}, "pause must be a number of seconds from 0 to 60"),
    ],
)
def test_bad_arguments_are_named(engine: Engine, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        auditlog.prune(engine, **arguments)


def test_a_connection_inside_a_transaction_is_refused(engine: Engine) -> None:
    with (
        engine.connect() as conn,
        conn.begin(),
        pytest.raises(ValueError, match="inside a transaction"),
    ):
        auditlog.prune(conn, before=JAN)


def test_prune_within_maintenance_is_not_needed_by_callers(engine: Engine) -> None:
    """maintenance() is auditlog's own path: prune takes it itself (a nested one is harmless)."""
    with engine.connect() as conn:
        with conn.begin(), maintenance(conn):
            pass
        assert auditlog.prune(conn, before=JAN).deleted == 0


def test_the_prune_command(
    engine: Engine, Session_: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    write(Session_, ["acme"] * 5)
    date_back(engine, JAN, dt.timedelta(days=1))
    url = engine.url.render_as_string(hide_password=False)
    status = main(
        [
            "prune", "--database-url", url, "--before", "2025-01-03T00:00:00Z",
            "--batch-size", "1", "--pause", "0.01", "--reason", "retention",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0
    assert out.startswith("pruned 2 entries older than 2025-01-03T00:00:00+00:00 (0 sealed)")
    assert err.splitlines() == [
        "pruned 1 entries (0 sealed) in 1 batches, " + err.splitlines()[0].rsplit(", ", 1)[1],
        "pruned 2 entries (0 sealed) in 2 batches, " + err.splitlines()[1].rsplit(", ", 1)[1],
    ]
    assert len(remaining(engine)) == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(prune_table.c.reason)).scalar_one() == "retention"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--before", "yesterday"], "--before: not an ISO 8601 date-time: 'yesterday'"),
        (
            ["--before", "2999-01-01T00:00:00Z"],
            "--before 2999-01-01T00:00:00+00:00 is in the future",
        ),
        (["--before", "2025-01-01T00:00:00Z", "--batch-size", "0"], "--batch-size: not a number"),
        (["--before", "2025-01-01T00:00:00Z", "--pause", "soon"], "--pause: not a number of"),
        ([], "the following arguments are required: --before"),
    ],
)
def test_the_prune_command_names_bad_arguments(
    engine: Engine, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    try:
        status = main(["prune", "--database-url", url, *arguments])
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err


def test_a_prune_drops_whole_months_of_a_partitioned_table(pg: Engine) -> None:  # noqa: F811
    """PostgreSQL, audit_log partitioned by month: the months entirely before the cutoff are
    dropped whole, the rest goes by batches, and the sealed log still verifies."""
    create_partitions(pg, ahead=2, now=dt.datetime(2025, 1, 15, tzinfo=dt.timezone.utc))
    day = dt.timedelta(days=1)
    january = _insert(
        pg, *(dt.datetime(2025, 1, 10, tzinfo=dt.timezone.utc) + i * day for i in range(3))
    )
    february = _insert(
        pg, *(dt.datetime(2025, 2, 10, tzinfo=dt.timezone.utc) + i * day for i in range(2))
    )
    march = _insert(
        pg, *(dt.datetime(2025, 3, 10, tzinfo=dt.timezone.utc) + i * day for i in range(4))
    )
    auditlog.seal(pg, batch=4)
    result = auditlog.prune(pg, before=dt.datetime(2025, 3, 12, tzinfo=dt.timezone.utc))
    assert result.partitions == ("audit_log_2025_01", "audit_log_2025_02")
    assert (result.deleted, result.sealed) == (7, 7)
    with pg.connect() as conn:
        names = [p.name for p in list_partitions(conn)]
        assert "audit_log_2025_01" not in names and "audit_log_2025_02" not in names
        assert "audit_log_2025_03" in names
        left = sorted(conn.execute(sa.select(LOG.c.id)).scalars())
        row = conn.execute(sa.select(prune_table)).one()
    assert left == sorted(march[2:])
    assert (row.entries, row.sealed, row.partitions) == (
        7,
        7,
        "audit_log_2025_01,audit_log_2025_02",
    )
    report = auditlog.verify(pg)
    assert report.intact, report.problems
    assert report.pruned == 7 and len(january + february) == 5


def test_time_travel_says_unknown_where_a_prune_removed_the_history(
    engine: Engine, Session_: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    write(Session_, ["acme", "acme"])  # tags 1 and 2, created
    with auditlog.audit_context(tenant_id="acme"), Session_.begin() as session:
        session.get(Tag, 2).label = "renamed"  # type: ignore[union-attr]
    date_back(engine, JAN, dt.timedelta(days=30))  # created Jan 1 and Jan 31, renamed Mar 2
    with Session_() as session:
        assert auditlog.state_as_of(session, Tag, 1, JAN + dt.timedelta(days=40)) is not None
    auditlog.prune(engine, before=JAN + dt.timedelta(days=45))  # tag 1's and 2's creations
    with Session_() as session:
        # tag 2: its rename is left, and holds the whole state
        renamed = auditlog.state_as_of(session, Tag, 2, JAN + dt.timedelta(days=90))
        assert renamed is not None and renamed["label"] == "renamed"
        # tag 1: nothing left up to then; not "no such tag" but unknown
        with pytest.raises(auditlog.InvalidQueryError, match="were pruned: its state then is") as e:
            auditlog.state_as_of(session, Tag, 1, JAN + dt.timedelta(days=90))
        shown = (JAN + dt.timedelta(days=90)).isoformat()
        assert f"no entry up to {shown}," in str(e.value)  # the time as ISO 8601, not a repr
        with pytest.raises(auditlog.InvalidQueryError, match="were pruned"):
            auditlog.object_as_of(session, Tag, 2, JAN + dt.timedelta(days=10), tenant_id="acme")
    url = engine.url.render_as_string(hide_password=False)
    status = main(
        ["history", "--database-url", url, "--content-type", "tests.models.Tag",
         "--object-id", "1", "--as-of", "2025-04-01T00:00:00Z"]
    )  # fmt: skip
    assert status == 2
    assert "were pruned: its state then is unknown" in capsys.readouterr().err


def test_a_long_transaction_never_queues_writers_behind_a_detach(
    pg: Engine,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Detaching a month waits for the transactions writing to audit_log, and new writers
    would queue behind it: it gives up after a short lock timeout, and the month goes by
    batches."""
    module = importlib.import_module("auditlog.lifecycle.prune")  # (the package's prune() hides it)
    monkeypatch.setattr(module, "DETACH_LOCK_TIMEOUT", 0.2)
    monkeypatch.setattr(module, "DETACH_ATTEMPTS", 2)
    create_partitions(pg, ahead=1, now=dt.datetime(2025, 1, 15, tzinfo=dt.timezone.utc))
    _insert(pg, *(dt.datetime(2025, 1, 10, tzinfo=dt.timezone.utc) for _ in range(3)))
    with pg.connect() as long_running:
        long_running.begin()
        _insert_on(long_running)  # a writer's open transaction on audit_log
        result = auditlog.prune(pg, before=dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc))
        long_running.rollback()
    assert (result.partitions, result.deleted) == ((), 3)  # by batches
    with pg.connect() as conn:
        assert "audit_log_2025_01" in [p.name for p in list_partitions(conn)]


def _insert_on(connection: sa.Connection) -> None:
    """One entry of now, written (not committed) on ``connection``."""
    moment = dt.datetime.now(dt.timezone.utc)
    content_type = connection.execute(sa.select(sa.func.min(ContentType.__table__.c.id))).scalar()
    connection.execute(
        sa.insert(LOG).values(
            id=str(ULID.from_datetime(moment)),
            action_type="create",
            timestamp=moment,
            user_agent="",
            object_id="x",
            content_type=content_type,
        )
    )
