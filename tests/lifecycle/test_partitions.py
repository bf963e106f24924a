"""Monthly partitions of audit_log on PostgreSQL: creation, capture into them, reads that touch
only their months, the default partition, dropping whole months, the guard and the command.

These tests own a database of their own (the test database's name + ``_partitions``), since
they drop and recreate ``audit_log`` partitioned, which other tests must never see.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ConfigurationError
from auditlog.cli import main
from auditlog.lifecycle.partitions import (
    MAX_AHEAD,
    Partition,
    create_partitioned_tables,
    create_partitions,
    drop_partitions,
    is_partitioned,
    list_partitions,
)
from auditlog.models import audit_log_table, content_type_table

from ..backends import IN_CI, selected_backends, server_url
from ..models import Base, Tag

pytestmark = pytest.mark.postgresql

UTC = dt.timezone.utc
JANUARY = dt.datetime(2025, 1, 15, 12, tzinfo=UTC)


def _month(year: int, month: int) -> Partition:
    upper = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Partition(
        f"audit_log_{year}_{month:02d}", dt.datetime(year, month, 1, tzinfo=UTC), upper
    )


DEFAULT = Partition("audit_log_default", None, None)


def _own_database(url: str) -> sa.URL:
    """The same server, a database of our own (created if missing)."""
    base = sa.make_url(url)
    own = base.set(database=f"{base.database}_partitions")
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": own.database}
            ).first()
            if exists is None:
                connection.exec_driver_sql(f'CREATE DATABASE "{own.database}"')
    finally:
        admin.dispose()
    return own


@pytest.fixture(scope="module")
def _server() -> Iterator[Engine]:
    if "postgresql" not in selected_backends():
        pytest.skip("postgresql is not among AUDITLOG_TEST_BACKENDS")
    with ExitStack() as stack:
        url = stack.enter_context(server_url("postgresql", stack))
        try:
            engine = sa.create_engine(_own_database(url))
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:  # a configured server that does not answer
            message = f"postgresql: cannot connect to {url!r}: {exc}"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield engine
        engine.dispose()


def _drop_everything(engine: Engine) -> None:
    with engine.begin() as connection:
        auditlog.unprotect(connection)
        Base.metadata.drop_all(connection)
        auditlog.metadata.drop_all(connection)


@pytest.fixture
def pg(_server: Engine) -> Iterator[Engine]:
    """An engine on our own database with the test models and a partitioned ``audit_log``."""
    _drop_everything(_server)
    auditlog.create_tables(_server, partitioned=True)
    with _server.begin() as connection:
        Base.metadata.create_all(connection)
    yield _server
    _drop_everything(_server)


@pytest.fixture
def bare(_server: Engine) -> Iterator[Engine]:
    """An engine on our own database with no audit tables at all."""
    _drop_everything(_server)
    yield _server
    _drop_everything(_server)


def _insert(engine: Engine, *moments: dt.datetime) -> list[str]:
    """Entries at these times, as capture writes them (the id's time is the timestamp's)."""
    with engine.begin() as connection:
        content_type = connection.execute(
            sa.select(content_type_table.c.id).where(content_type_table.c.name == "tests.Manual")
        ).scalar()
        if content_type is None:
            content_type = connection.execute(
                sa.insert(content_type_table)
                .values(name="tests.Manual", table_name="manual")
                .returning(content_type_table.c.id)
            ).scalar_one()
        ids = [str(ULID.from_datetime(moment)) for moment in moments]
        connection.execute(
            sa.insert(audit_log_table),
            [
                {
                    "id": entry_id,
                    "action_type": "create",
                    "timestamp": moment,
                    "user_agent": "",
                    "object_id": str(n),
                    "content_type": content_type,
                    "after_state": {"n": n},
                }
                for n, (entry_id, moment) in enumerate(zip(ids, moments, strict=True))
            ],
        )
    return ids


def _where(engine: Engine) -> dict[str, int]:
    """How many entries each partition holds."""
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT tableoid::regclass::text, count(*) FROM audit_log GROUP BY 1"
        ).all()
    return dict(rows)


def _partitions(engine: Engine) -> list[Partition]:
    with engine.connect() as connection:
        return list_partitions(connection)


# --- creating ---------------------------------------------------------------------------------


def test_create_tables_partitioned_makes_the_months_ahead_and_a_default(pg: Engine) -> None:
    now = dt.datetime.now(UTC)
    first = dt.datetime(now.year, now.month, 1, tzinfo=UTC)
    months = [first]
    for _ in range(3):
        months.append(_month(months[-1].year, months[-1].month).upper)  # type: ignore[arg-type]
    with pg.connect() as connection:
        assert is_partitioned(connection)
        assert list_partitions(connection) == [
            *(_month(m.year, m.month) for m in months),
            DEFAULT,
        ]
        key = sa.inspect(connection).get_pk_constraint("audit_log")["constrained_columns"]
        assert key == ["id", "timestamp"]
        # every index of the model, on the table and so on each partition
        declared = {index.name for index in audit_log_table.indexes}
        assert declared <= {i["name"] for i in sa.inspect(connection).get_indexes("audit_log")}
        indexed = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_log_default'"
        ).scalar_one()
        assert indexed == len(declared) + 1  # and the primary key's


def test_create_tables_partitioned_twice_is_harmless(pg: Engine) -> None:
    before = _partitions(pg)
    auditlog.create_tables(pg, partitioned=True)
    auditlog.create_tables(pg)  # and then without the keyword: the table is left as it is
    assert _partitions(pg) == before


def test_create_tables_partitioned_refuses_an_existing_plain_table(bare: Engine) -> None:
    auditlog.create_tables(bare)
    with pytest.raises(ConfigurationError, match=r"not partitioned.*docs/partitions\.md"):
        auditlog.create_tables(bare, partitioned=True)
    with bare.connect() as connection:
        assert not is_partitioned(connection)
    with pytest.raises(ConfigurationError, match="not a partitioned table"):
        create_partitions(bare, ahead=1)


def test_partitioned_is_refused_on_sqlite(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.sqlite3'}")
    with pytest.raises(ConfigurationError, match="needs PostgreSQL; this database is sqlite"):
        auditlog.create_tables(engine, partitioned=True)
    with engine.connect() as connection:
        assert not sa.inspect(connection).has_table("audit_log")
        assert not is_partitioned(connection)
    engine.dispose()


def test_create_partitions_is_idempotent_and_respects_ahead(pg: Engine) -> None:
    created = create_partitions(pg, ahead=2, now=JANUARY)
    assert created == [_month(2025, 1), _month(2025, 2), _month(2025, 3)]
    assert create_partitions(pg, ahead=2, now=JANUARY) == []
    assert create_partitions(pg, ahead=0, now=dt.datetime(2025, 3, 31, 23, 59, tzinfo=UTC)) == []
    # a naive now is UTC; ahead counts months after it, across a year's end
    assert create_partitions(pg, ahead=1, now=dt.datetime(2024, 12, 31, 23, 0)) == [
        _month(2024, 12)
    ]
    names = [p.name for p in _partitions(pg)]
    assert names[:4] == [
        "audit_log_2024_12",
        "audit_log_2025_01",
        "audit_log_2025_02",
        "audit_log_2025_03",
    ]
    assert names[-1] == "audit_log_default"


def test_processes_creating_the_same_months_at_once_take_turns(pg: Engine) -> None:
    """Without the advisory lock, the second would fail on a table that already exists."""
    barrier = threading.Barrier(4)
    results: list[list[Partition]] = []

    def create() -> None:
        barrier.wait()
        results.append(create_partitions(pg, ahead=5, now=JANUARY))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert sorted(p.name for created in results for p in created) == [
        f"audit_log_2025_{m:02d}" for m in range(1, 7)
    ]


def test_create_partitions_recreates_a_missing_default(pg: Engine) -> None:
    with pg.begin() as connection:
        connection.exec_driver_sql("DROP TABLE audit_log_default")
    assert create_partitions(pg, ahead=0) == [DEFAULT]


@pytest.mark.parametrize("ahead", [-1, MAX_AHEAD + 1, 10**6, 1.5, "3", True])
def test_bad_ahead_is_refused_naming_it(pg: Engine, ahead: Any) -> None:
    with pytest.raises(
        ValueError, match=rf"ahead must be a number of months from 0 to {MAX_AHEAD}"
    ):
        create_partitions(pg, ahead=ahead)
    with pytest.raises(ValueError, match="ahead must be"):
        create_partitioned_tables(pg, ahead=ahead)


# --- writing and reading ----------------------------------------------------------------------


def test_capture_writes_into_this_months_partition(pg: Engine) -> None:
    maker = sessionmaker(pg, expire_on_commit=False)
    auditlog.enable(maker)
    auditlog.register(Tag)
    with maker.begin() as session:
        session.add_all([Tag(id=1, label="one"), Tag(id=2, label="two")])
    with maker.begin() as session:
        session.get(Tag, 1).label = "uno"  # type: ignore[union-attr]
    this_month = _month(dt.datetime.now(UTC).year, dt.datetime.now(UTC).month).name
    assert _where(pg) == {this_month: 3}
    with Session(pg) as session:
        page = auditlog.query_history(session)
        assert [(e.action_type, e.object_id) for e in page.results] == [
            ("update", "1"),
            ("create", "2"),
            ("create", "1"),
        ]


def test_entries_land_in_their_months_and_the_rest_in_the_default(pg: Engine) -> None:
    create_partitions(pg, ahead=1, now=JANUARY)
    _insert(
        pg,
        dt.datetime(2025, 1, 1, tzinfo=UTC),  # the first instant of January
        dt.datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2025, 2, 1, tzinfo=UTC),
        dt.datetime(2024, 6, 1, tzinfo=UTC),  # no partition of its own
    )
    assert _where(pg) == {"audit_log_2025_01": 2, "audit_log_2025_02": 1, "audit_log_default": 1}


def _explained(engine: Engine, read: Any) -> tuple[Any, str]:
    """What ``read(session)`` returns, and the plans of the statements it sent on audit_log."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM audit_log" in statement and not statement.startswith("EXPLAIN"):
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            result = read(session)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert sent
    with engine.connect() as connection:
        plans = [
            "\n".join(
                row[0]
                for row in connection.exec_driver_sql(f"EXPLAIN (COSTS OFF) {statement}", params)
            )
            for statement, params in sent
        ]
    return result, "\n".join(plans)


def test_a_time_bounded_read_touches_only_its_months(pg: Engine) -> None:
    create_partitions(pg, ahead=3, now=JANUARY)
    _insert(pg, *(dt.datetime(2025, m, d, tzinfo=UTC) for m in (1, 2, 3, 4) for d in (3, 17)))
    page, plan = _explained(
        pg,
        lambda session: auditlog.query_history(
            session,
            since=dt.datetime(2025, 2, 10, tzinfo=UTC),
            until=dt.datetime(2025, 3, 10, tzinfo=UTC),
        ),
    )
    assert page.count == 2
    assert [e.timestamp.day for e in page.results] == [3, 17]
    assert "audit_log_2025_02" in plan and "audit_log_2025_03" in plan
    for other in ("audit_log_2025_01", "audit_log_2025_04", "audit_log_default"):
        assert other not in plan
    _, unbounded = _explained(pg, lambda session: auditlog.query_history(session))
    assert "audit_log_2025_01" in unbounded and "audit_log_default" in unbounded


# --- the default partition ----------------------------------------------------------------------


def test_a_month_created_late_takes_its_entries_from_the_default(pg: Engine) -> None:
    create_partitions(pg, ahead=0, now=JANUARY)
    late = dt.datetime(2025, 2, 14, 9, 30, 0, 123456, tzinfo=UTC)
    ids = _insert(
        pg, late, dt.datetime(2025, 2, 28, tzinfo=UTC), dt.datetime(2025, 3, 1, tzinfo=UTC)
    )
    assert _where(pg) == {"audit_log_default": 3}
    with Session(pg) as session:
        before = [(e.id, e.timestamp, e.after_state) for e in session.scalars(sa.select(AuditLog))]
    assert create_partitions(pg, ahead=1, now=JANUARY) == [_month(2025, 2)]
    assert _where(pg) == {"audit_log_2025_02": 2, "audit_log_default": 1}
    with Session(pg) as session:
        after = [(e.id, e.timestamp, e.after_state) for e in session.scalars(sa.select(AuditLog))]
        assert session.get(AuditLog, ids[0]).timestamp == late  # type: ignore[union-attr]
    assert sorted(after) == sorted(before)  # moved, not changed
    assert _partitions(pg)[-1] == DEFAULT  # attached again, still the default


def test_a_late_month_is_created_under_the_guard(pg: Engine) -> None:
    auditlog.protect(pg)
    _insert(pg, dt.datetime(2025, 5, 5, tzinfo=UTC))
    assert create_partitions(pg, ahead=0, now=dt.datetime(2025, 5, 1, tzinfo=UTC)) == [
        _month(2025, 5)
    ]
    assert _where(pg) == {"audit_log_2025_05": 1}
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg.begin() as connection:
        connection.execute(sa.delete(audit_log_table))


# --- dropping -----------------------------------------------------------------------------------


def test_drop_partitions_drops_whole_months_before_the_date_with_exact_counts(pg: Engine) -> None:
    create_partitions(pg, ahead=3, now=JANUARY)
    _insert(
        pg,
        *[dt.datetime(2025, 1, 1 + i % 28, tzinfo=UTC) for i in range(7)],
        *[dt.datetime(2025, 2, 1 + i % 28, tzinfo=UTC) for i in range(5)],
        *[dt.datetime(2025, 3, 1 + i, tzinfo=UTC) for i in range(3)],
        dt.datetime(2020, 1, 1, tzinfo=UTC),  # in the default: never dropped
    )
    with pg.begin() as connection:  # mid-March: January and February go, March stays
        dropped = drop_partitions(connection, dt.datetime(2025, 3, 15, tzinfo=UTC))
    assert dropped == [(_month(2025, 1), 7), (_month(2025, 2), 5)]
    assert _where(pg) == {"audit_log_2025_03": 3, "audit_log_default": 1}
    names = [p.name for p in _partitions(pg)]
    assert names[:2] == ["audit_log_2025_03", "audit_log_2025_04"]
    assert names[-1] == "audit_log_default"
    with pg.begin() as connection:  # exactly at March's end: March goes
        assert drop_partitions(connection, dt.datetime(2025, 4, 1)) == [(_month(2025, 3), 3)]
    with pg.begin() as connection:  # nothing left before that
        assert drop_partitions(connection, dt.datetime(2025, 4, 1, tzinfo=UTC)) == []


def test_drop_partitions_rolls_back_with_the_callers_transaction(pg: Engine) -> None:
    create_partitions(pg, ahead=0, now=JANUARY)
    _insert(pg, dt.datetime(2025, 1, 2, tzinfo=UTC))
    with pg.connect() as connection, connection.begin() as transaction:
        assert drop_partitions(connection, dt.datetime(2025, 2, 1, tzinfo=UTC)) == [
            (_month(2025, 1), 1)
        ]
        transaction.rollback()
    assert _where(pg) == {"audit_log_2025_01": 1}


def test_drop_partitions_refuses_a_future_date_and_an_unpartitioned_table(pg: Engine) -> None:
    with pg.connect() as connection, pytest.raises(ValueError, match="in the future"):
        drop_partitions(connection, dt.datetime.now(UTC) + dt.timedelta(days=40))
    _drop_everything(pg)
    auditlog.create_tables(pg)
    with pg.connect() as connection, pytest.raises(ConfigurationError, match="not a partitioned"):
        drop_partitions(connection, JANUARY)


# --- the guard ----------------------------------------------------------------------------------


def test_protect_refuses_updates_and_deletes_on_the_partitions(pg: Engine) -> None:
    create_partitions(pg, ahead=0, now=JANUARY)
    _insert(pg, JANUARY, dt.datetime(2019, 1, 1, tzinfo=UTC))
    auditlog.protect(pg)
    statements = [
        "UPDATE audit_log SET user_id = 'x'",
        "DELETE FROM audit_log",
        "UPDATE audit_log_2025_01 SET user_id = 'x'",  # a partition by its own name
        "DELETE FROM audit_log_default",
        "TRUNCATE audit_log",
        "TRUNCATE audit_log_2025_01",  # PostgreSQL does not clone TRUNCATE triggers: ours
        "TRUNCATE audit_log_default",
    ]
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg.begin() as connection:
            connection.exec_driver_sql(statement)
    assert _where(pg) == {"audit_log_2025_01": 1, "audit_log_default": 1}
    # inserting still works, and whole months still go (the guard does not see DDL)
    _insert(pg, dt.datetime(2025, 1, 20, tzinfo=UTC))
    with pg.begin() as connection:
        assert drop_partitions(connection, dt.datetime(2025, 2, 1, tzinfo=UTC)) == [
            (_month(2025, 1), 2)
        ]
    auditlog.unprotect(pg)  # and the partitions' TRUNCATE guard follows the table's
    with pg.begin() as connection:
        connection.exec_driver_sql("TRUNCATE audit_log_default")
    assert _where(pg) == {}


# --- the command --------------------------------------------------------------------------------


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_the_command_creates_the_months_ahead_and_prints_them(
    pg: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with pg.begin() as connection:
        connection.exec_driver_sql("DROP TABLE audit_log_default")
    last = _partitions(pg)[-1]
    assert main(["partitions", "--ahead", "6", "--database-url", _url(pg)]) == 0
    out = capsys.readouterr().out.splitlines()
    created = _partitions(pg)
    assert len(created) == 7 + 1
    first = created[4]
    assert (
        out[0]
        == f"created {first.name}  from {first.lower:%Y-%m-%dT%H:%M:%S+00:00} to {first.upper:%Y-%m-%dT%H:%M:%S+00:00}"
    )
    assert out[-1].startswith("created audit_log_default  DEFAULT")
    assert len(out) == 4
    assert created[3] == last
    assert main(["partitions", "--ahead", "6", "--database-url", _url(pg)]) == 0
    assert capsys.readouterr().out == ""  # nothing missing: nothing printed (cron stays quiet)


def test_the_command_lists_partitions_with_bounds_and_estimates(
    pg: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    create_partitions(pg, ahead=0, now=JANUARY)
    _insert(pg, *(JANUARY for _ in range(10)))
    with pg.connect() as connection:
        connection.exec_driver_sql("ANALYZE audit_log")
    assert main(["partitions", "--list", "--database-url", _url(pg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "audit_log_2025_01  from 2025-01-01T00:00:00+00:00 to 2025-02-01T00:00:00+00:00  "
        "~10 entries"
    )
    assert lines[-1].startswith("audit_log_default  DEFAULT (entries outside every month)  ~0")
    assert len(lines) == len(_partitions(pg))


@pytest.mark.parametrize("ahead", ["-1", "121", "many", ""])
def test_the_command_refuses_a_bad_ahead(
    pg: Engine, capsys: pytest.CaptureFixture[str], ahead: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["partitions", "--ahead", ahead, "--database-url", _url(pg)])
    assert exited.value.code == 2
    assert f"not a number of months from 0 to {MAX_AHEAD}: {ahead!r}" in capsys.readouterr().err


def test_the_command_wants_ahead_or_list(pg: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["partitions", "--database-url", _url(pg)]) == 2
    assert "give --ahead N" in capsys.readouterr().err


def test_the_command_refuses_sqlite_and_an_unpartitioned_table(
    bare: Engine, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    engine = sa.create_engine(sqlite)
    auditlog.create_tables(engine)
    engine.dispose()
    assert main(["partitions", "--ahead", "3", "--database-url", sqlite]) == 1
    assert "partitions of audit_log need PostgreSQL; --database-url is sqlite" in (
        capsys.readouterr().err
    )
    auditlog.create_tables(bare)
    assert main(["partitions", "--list", "--database-url", _url(bare)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("auditlog partitions: error: audit_log in postgresql")
    assert "is not partitioned" in err and "docs/partitions.md" in err


# --- moving an existing table, as docs/partitions.md says -----------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "partitions.md"


def _migration_blocks() -> tuple[str, str]:
    """The SQL and the Python of the doc's "Moving an existing table to partitions"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Moving an existing table to partitions", 1)[1].split("\n## ", 1)[0]
    sql = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    python = re.search(r"```python norun\n(.*?)```", section, re.DOTALL)
    assert sql is not None and python is not None
    return sql.group(1), python.group(1)


def test_the_documented_move_of_an_existing_table_keeps_every_entry_sealed_and_guarded(
    bare: Engine,
) -> None:
    auditlog.create_tables(bare)
    start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    ids = _insert(bare, *(start + dt.timedelta(days=3 * i) for i in range(200)))  # to 2026-10
    auditlog.protect(bare)
    auditlog.seal(bare)
    sql, python = _migration_blocks()
    with bare.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for statement in filter(str.strip, sql.split(";")):
            connection.exec_driver_sql(statement)
    exec(compile(python, str(DOC), "exec"), {"engine": bare})

    legacy = Partition("audit_log_legacy", start, dt.datetime(2026, 12, 1, tzinfo=UTC))
    assert _partitions(bare)[:2] == [legacy, _month(2026, 12)]
    assert _where(bare) == {"audit_log_legacy": 200}
    with Session(bare) as session:
        assert sorted(session.scalars(sa.select(AuditLog.id))) == sorted(ids)
    assert auditlog.verify(bare).intact
    create_partitions(bare, ahead=3)  # cron's next run: the legacy partition guarded too
    for statement in ("DELETE FROM audit_log", "TRUNCATE audit_log_legacy"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), bare.begin() as connection:
            connection.exec_driver_sql(statement)
    now = dt.datetime.now(UTC)
    with bare.begin() as connection:  # the legacy range goes whole, once all of it is old
        dropped = drop_partitions(connection, now)
    assert dropped == ([] if now < legacy.upper else [(legacy, 200)])  # type: ignore[operator]
