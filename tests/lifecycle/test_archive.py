"""Archives on every backend: an export verifies offline, imports into an empty database that then
verifies, and exports again to the same entries; every format keeps every value exactly; any
edit of the file is found and named; imports refuse conflicts and damage, writing nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog, ContentType
from auditlog.integrity import seal_entry_table, seal_table
from auditlog.lifecycle import (
    ArchiveError,
    export_archive,
    import_archive,
    prune_entry_table,
    prune_table,
    verify_archive,
)
from auditlog.lifecycle.archive import ArchiveReader

from ..helpers import date_back
from ..models import Customer

LOG = AuditLog.__table__
JAN = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
FORMATS = ["jsonl", "csv", "parquet"]
#: Texts a format could get wrong: empty, unicode, separators, quotes, line breaks, COPY's null.
NAMES = ["", "Zoë ☃ 東京", 'a "quoted", comma;\ttab', "line\nbreak\r\n", "\\N", "\\", "plain"]


@pytest.fixture
def target(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty database on the same backend: a new SQLite file, or the configured database's
    name + ``_import`` on the same server, emptied of auditlog's tables."""
    if engine.dialect.name == "sqlite":
        other = sa.create_engine(f"sqlite:///{tmp_path / 'import.sqlite3'}")

        @event.listens_for(other, "connect")
        def _sqlite_fk(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    else:
        name = f"{engine.url.database}_import"
        admin = sa.create_engine(engine.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if engine.dialect.name == "postgresql":
                found = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if found is None:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{name}`")
        admin.dispose()
        other = sa.create_engine(engine.url.set(database=name))
        with other.begin() as conn:
            auditlog.metadata.drop_all(conn)
    yield other
    other.dispose()


def write(maker: sessionmaker[Session], count: int = 7) -> None:
    """Audited creates of customers with awkward values, an update and a delete."""
    auditlog.register(Customer)
    for i in range(1, count + 1):
        context = auditlog.audit_context(
            tenant_id="acme" if i % 3 else "globex",
            user_id=f"user {i}" if i % 2 else None,
            ip_address="2001:db8::1" if i % 2 else None,
            request={"path": "/ü", "tags": ["a", None, {"n": 1.5, "deep": [[]]}], "i": i},
        )
        with context, maker.begin() as session:
            email = None if i % 2 else ""
            session.add(Customer(id=i, name=NAMES[i % len(NAMES)], email=email, tenant_id="acme"))
    with auditlog.audit_context(tenant_id="acme", user_id="ada"), maker.begin() as session:
        session.get_one(Customer, 1).name = "Ada Lovelace ✓"
    with auditlog.audit_context(tenant_id="acme", user_id="ada"), maker.begin() as session:
        session.delete(session.get_one(Customer, 2))
    time.sleep(0.002)  # an export's default end, now, is exclusive to the millisecond


def dated_ids(engine: Engine, first: dt.datetime, step: dt.timedelta) -> list[str]:
    """:func:`date_back`, the ids only."""
    return [entry_id for entry_id, _ in date_back(engine, first, step)]


def rows(engine: Engine) -> list[dict[str, Any]]:
    """Every entry, every column, in id order."""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(LOG).order_by(LOG.c.id))]


def entry_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in ArchiveReader(path) if r["record"] == "entry"]


@pytest.mark.parametrize("form", FORMATS)
def test_an_export_verifies_imports_and_exports_again_to_the_same_entries(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path, form: str
) -> None:
    write(Session_)
    date_back(engine, JAN, dt.timedelta(hours=1))
    head = auditlog.seal(engine, batch=3).head
    with Session_.begin() as session:  # one more, not sealed, newer than the selection
        session.add(Customer(id=99, name="late"))
    before = JAN + dt.timedelta(days=1)
    archive = tmp_path / f"archive.{form}"
    result = export_archive(engine, archive, format=form, before=before, page_size=2)
    assert (result.entries, result.sealed, result.seals) == (9, 9, 3)
    report = verify_archive(archive, head=head)
    assert report.intact, report.problems
    assert (report.seals, report.sealed, report.unsealed, report.head) == (3, 9, [], head)

    imported = import_archive(target, archive)
    assert (imported.entries, imported.skipped, imported.seals, imported.gone) == (9, 0, 3, 0)
    with engine.connect() as conn:  # the header holds every content type of the database
        known = conn.execute(sa.select(sa.func.count()).select_from(ContentType.__table__))
        assert imported.content_types == known.scalar_one()
    assert auditlog.verify(target, head=head).intact
    assert rows(target) == [r for r in rows(engine) if r["timestamp"] < before]

    again = tmp_path / f"again.{form}"
    export_archive(target, again, format=form, before=before)
    assert verify_archive(again, head=head).intact
    assert entry_records(again) == entry_records(archive)


@pytest.mark.parametrize("form", FORMATS)
def test_every_format_keeps_null_empty_unicode_and_nested_json_apart(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path, form: str
) -> None:
    write(Session_)
    archive = tmp_path / f"values.{form}"
    export_archive(engine, archive, format=form)
    source = rows(engine)
    records = entry_records(archive)
    assert [r["id"] for r in records] == [r["id"] for r in source]
    created = {r["after_state"]["id"]: r for r in records if r["action_type"] == "create"}
    assert created[2]["after_state"]["email"] == "" and created[1]["after_state"]["email"] is None
    assert {created[i]["after_state"]["name"] for i in created} >= set(NAMES[1:7])
    assert created[3]["extra"]["request"]["tags"] == ["a", None, {"n": 1.5, "deep": [[]]}]
    assert created[1]["user_id"] == "user 1" and created[2]["user_id"] is None
    assert created[1]["user_agent"] == created[2]["user_agent"] == ""
    import_archive(target, archive)
    assert rows(target) == source


@pytest.mark.parametrize("form", ["jsonl", "csv"])
def test_an_archive_proves_entries_pruned_before_it_and_the_import_counts_them_as_pruned(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path, form: str
) -> None:
    write(Session_)
    ids = dated_ids(engine, JAN, dt.timedelta(hours=1))
    auditlog.seal(engine, batch=4)
    assert auditlog.prune(engine, before=JAN + dt.timedelta(hours=5)).sealed == 5
    archive = tmp_path / f"pruned.{form}"
    result = export_archive(engine, archive, format=form, before=JAN + dt.timedelta(hours=7))
    assert (result.entries, result.seals) == (2, 2)  # seal 1 (all pruned) keeps the chain whole
    report = verify_archive(archive)
    assert report.intact, report.problems
    # seal 1: 4 pruned; seal 2: 1 pruned, 2 archived, 1 newer than the selection
    assert (report.sealed, report.pruned) == (8, 5)
    imported = import_archive(target, archive)
    assert (imported.entries, imported.seals, imported.gone) == (2, 2, 6)
    verified = auditlog.verify(target)
    assert verified.intact, verified.problems
    assert (verified.sealed, verified.pruned) == (8, 6)
    with target.connect() as conn:
        gone = sorted(conn.execute(sa.select(prune_entry_table.c.entry_id)).scalars())
        kind = conn.execute(sa.select(prune_table.c.kind)).scalar_one()
    assert gone == sorted([*ids[:5], ids[7]]) and kind == "import"
    again = tmp_path / f"again.{form}"
    export_archive(target, again, format=form)
    assert verify_archive(again).intact


def test_erased_fields_stay_provable_in_the_archive_and_after_the_import(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    write(Session_)
    auditlog.seal(engine)
    auditlog.erase(engine, user_id="user 1", reason="request 12")
    archive = tmp_path / "erased.jsonl"
    export_archive(engine, archive)
    report = verify_archive(archive)
    assert report.intact, report.problems
    assert len(report.erased) == 1 and "user_id" in report.erased[0][1]
    import_archive(target, archive)
    verified = auditlog.verify(target)
    assert verified.intact and verified.erased == report.erased


def test_unsealed_entries_are_listed_and_a_tenant_archive_verifies(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    write(Session_)
    auditlog.seal(engine, batch=5)
    with Session_.begin() as session:
        session.add(Customer(id=50, name="unsealed", tenant_id="acme"))
    archive = tmp_path / "acme.jsonl"
    result = export_archive(engine, archive, tenant_id="globex")
    records = entry_records(archive)
    assert result.entries == len(records) == 2 and {r["tenant_id"] for r in records} == {"globex"}
    assert verify_archive(archive).intact
    everything = tmp_path / "all.csv"
    export_archive(engine, everything, format="csv")
    report = verify_archive(everything)
    assert report.intact and len(report.unsealed) == 1 and report.sealed == 9


def test_an_export_reads_page_after_page_in_id_order(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    write(Session_)
    seen: list[int] = []
    archive = tmp_path / "pages.jsonl"
    result = export_archive(engine, archive, page_size=2, progress=seen.append)
    assert seen == [2, 4, 6, 8, 9] and result.entries == 9
    assert [r["id"] for r in entry_records(archive)] == [r["id"] for r in rows(engine)]


def test_before_selects_to_the_millisecond(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    write(Session_, 2)
    ids = dated_ids(engine, JAN, dt.timedelta(milliseconds=1))
    archive = tmp_path / "ms.jsonl"
    result = export_archive(engine, archive, before=JAN + dt.timedelta(microseconds=1999))
    assert result.before == JAN + dt.timedelta(milliseconds=1)
    assert [r["id"] for r in entry_records(archive)] == ids[:1]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("form", FORMATS)
def test_a_full_disk_stops_the_export_with_its_reason_and_the_database_is_usable(
    engine: Engine, Session_: sessionmaker[Session], form: str
) -> None:
    write(Session_)
    auditlog.seal(engine, batch=4)
    with pytest.raises(ArchiveError, match="cannot write '/dev/full': No space left on device"):
        export_archive(engine, "/dev/full", format=form, page_size=2)
    with Session_.begin() as session:  # the export's connection went back to the pool clean
        session.add(Customer(id=60, name="after"))
    assert entry_count(engine) == 10


def entry_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(LOG)).scalar_one()


# --- edits of the file ------------------------------------------------------------------------


def _sealed_archive(engine: Engine, maker: sessionmaker[Session], path: Path) -> str:
    write(maker)
    head = auditlog.seal(engine, batch=4).head
    assert head is not None
    export_archive(engine, path, format=path.suffix[1:])
    return head


def _kinds(path: Path) -> set[str]:
    return {p.kind for p in verify_archive(path).problems}


def test_an_edited_value_a_removed_line_a_cut_and_an_edited_seal_are_named(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)
    lines = archive.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[3])

    edited = tmp_path / "edited.jsonl"
    changed = {**entry, "object_id": "someone else"}
    edited.write_text("".join([*lines[:3], json.dumps(changed) + "\n", *lines[4:]]), "utf-8")
    problems = verify_archive(edited).problems
    assert {p.kind for p in problems} == {"entry_changed", "archive_changed"}
    assert [p.entry_id for p in problems if p.kind == "entry_changed"] == [entry["id"]]

    removed = tmp_path / "removed.jsonl"  # its seal lists no members: all are archived
    removed.write_text("".join([*lines[:3], *lines[4:]]), "utf-8")
    problems = verify_archive(removed).problems
    assert {p.kind for p in problems} == {"entry_removed", "archive_changed"}
    assert [(p.seal, p.entry_id) for p in problems if p.kind == "entry_removed"] == [
        (entry["seal"], None)
    ]

    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-1]), "utf-8")
    assert _kinds(cut) == {"archive_truncated"}

    seal = json.loads(lines[-3])
    assert seal["record"] == "seal"
    resealed = tmp_path / "resealed.jsonl"
    seal["sealed_at"] = "2020-01-01T00:00:00.000000+00:00"
    resealed.write_text("".join([*lines[:-3], json.dumps(seal) + "\n", *lines[-2:]]), "utf-8")
    assert _kinds(resealed) == {"seal_changed", "archive_changed"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` (a trailer last) with the trailer's counts and digest made again."""
    import hashlib

    body = [json.dumps(r, ensure_ascii=False) + "\n" for r in records[:-1]]
    trailer = {
        **records[-1],
        "records": len(body),
        "sha256": hashlib.sha256("".join(body).encode()).hexdigest(),
    }
    path.write_text("".join([*body, json.dumps(trailer) + "\n"]), "utf-8")


def test_a_seal_lists_its_members_when_some_are_not_archived_and_names_a_removed_one(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    write(Session_)
    ids = dated_ids(engine, JAN, dt.timedelta(hours=1))
    auditlog.seal(engine, batch=4)  # seals of entries 0-3, 4-7, 8
    archive = tmp_path / "part.jsonl"
    export_archive(engine, archive, before=JAN + dt.timedelta(hours=6))  # entries 0-5
    records = _lines(archive)
    seals = {r["seq"]: r for r in records if r["record"] == "seal"}
    assert sorted(seals) == [1, 2] and seals[1]["members"] is None
    assert [m[0] for m in seals[2]["members"]] == ids[4:8]  # 6 and 7: newer than the selection
    assert verify_archive(archive).intact

    entry = next(r for r in records if r["record"] == "entry" and r["id"] == ids[5])
    _rewrite(archive, [r for r in records if r is not entry])  # the trailer made again too
    problems = verify_archive(archive).problems
    assert [(p.kind, p.entry_id, p.seal) for p in problems] == [("entry_removed", ids[5], 2)]


def test_an_archive_of_version_1_with_every_member_listed_still_verifies_and_imports(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    head = _sealed_archive(engine, Session_, tmp_path / "v2.jsonl")
    records = _lines(tmp_path / "v2.jsonl")
    assert records[0]["version"] == 2
    records[0]["version"] = 1
    for seal in (r for r in records if r["record"] == "seal"):
        assert seal["members"] is None
        seal["members"] = [
            [r["id"], r["digest"]]
            for r in records
            if r["record"] == "entry" and r["seal"] == seal["seq"]
        ]
    old = tmp_path / "v1.jsonl"
    _rewrite(old, records)
    report = verify_archive(old, head=head)
    assert report.intact and report.sealed == 9, report.problems
    assert import_archive(target, old).entries == 9
    assert auditlog.verify(target, head=head).intact

    gone = next(r for r in records if r["record"] == "entry")
    _rewrite(old, [r for r in records if r is not gone])
    problems = verify_archive(old).problems
    assert [(p.kind, p.entry_id) for p in problems] == [("entry_removed", gone["id"])]


def test_an_edit_that_rewrites_the_trailer_is_still_found(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    import hashlib

    archive = tmp_path / "a.jsonl"
    head = _sealed_archive(engine, Session_, archive)
    lines = archive.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["after_state"] = {**(entry["after_state"] or {}), "name": "forged"}
    body = [*lines[:2], json.dumps(entry) + "\n", *lines[3:-1]]
    trailer = json.loads(lines[-1])
    trailer["sha256"] = hashlib.sha256("".join(body).encode()).hexdigest()
    forged = tmp_path / "forged.jsonl"
    forged.write_text("".join([*body, json.dumps(trailer) + "\n"]), "utf-8")
    assert _kinds(forged) == {"entry_changed"}
    seq = int(head.partition(":")[0])
    assert {p.kind for p in verify_archive(archive, head=f"{seq}:{'0' * 64}").problems} == {
        "head_mismatch"
    }


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_an_edited_cell_is_found_in_csv_and_parquet(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path, form: str
) -> None:
    archive = tmp_path / f"a.{form}"
    _sealed_archive(engine, Session_, archive)
    edited = tmp_path / f"edited.{form}"
    if form == "csv":
        text = archive.read_text(encoding="utf-8")
        edited.write_text(text.replace(",user 1,", ",user 9,", 1), encoding="utf-8")
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(archive)
        users = table.column("user_id").to_pylist()
        users[users.index("user 1")] = "user 9"
        index = table.schema.get_field_index("user_id")
        table = table.set_column(index, "user_id", [users])
        pq.write_table(table, edited)
    assert _kinds(edited) == {"entry_changed", "archive_changed"}


# --- imports ----------------------------------------------------------------------------------


def _counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            if inspector.has_table(t.name)
            else -1
            for t in (LOG, ContentType.__table__, seal_table, seal_entry_table)
        )


def test_importing_twice_writes_nothing_the_second_time(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    archive = tmp_path / "a.csv"
    head = _sealed_archive(engine, Session_, archive)
    first = import_archive(target, archive)
    counts = _counts(target)
    second = import_archive(target, archive)
    assert (first.entries, first.seals) == (9, 3)
    assert (second.entries, second.skipped, second.seals, second.seals_skipped) == (0, 9, 0, 3)
    assert second.content_types == 0 and _counts(target) == counts
    assert auditlog.verify(target, head=head).intact


def test_a_content_type_taken_by_another_model_is_refused_and_nothing_written(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)
    with engine.connect() as conn:
        used = sa.select(LOG.c.content_type).limit(1).scalar_subquery()
        ctype = conn.execute(
            sa.select(ContentType.__table__).where(ContentType.__table__.c.id == used)
        ).one()
    auditlog.create_tables(target)
    with target.begin() as conn:
        conn.execute(ContentType.__table__.insert().values(id=ctype.id, name="shop.Basket"))
    before = _counts(target)
    with pytest.raises(ArchiveError, match=rf"content type {ctype.id} is 'shop\.Basket'"):
        import_archive(target, archive)
    assert _counts(target) == before


def test_a_database_with_another_chain_of_seals_is_refused_and_nothing_written(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)
    auditlog.create_tables(target)
    with target.begin() as conn:  # an entry of its own, sealed: its seal 1 is not the archive's
        conn.execute(ContentType.__table__.insert().values(id=500, name="other.Model"))
        conn.execute(
            LOG.insert().values(id=str(ULID()), action_type="create", object_id="1",
                                timestamp=dt.datetime.now(dt.timezone.utc), content_type=500)
        )  # fmt: skip
    auditlog.seal(target)
    before = _counts(target)
    with pytest.raises(ArchiveError, match="seal 1 is not the archive's seal 1"):
        import_archive(target, archive)
    assert _counts(target) == before


def test_a_damaged_archive_is_refused_and_nothing_written(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(ArchiveError, match=r"nothing imported.*cut short|not as written"):
        import_archive(target, cut)
    assert _counts(target)[0] in (-1, 0)
    with pytest.raises(ArchiveError, match="is not an auditlog archive"):
        import_archive(target, Path(__file__))


def test_parquet_names_its_extra_when_pyarrow_is_missing(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['pyarrow'] = None\n"
        "from auditlog.lifecycle.archive import ArchiveError, open_writer\n"
        "try:\n"
        "    open_writer('parquet', open(sys.argv[1], 'wb'))\n"
        "except ArchiveError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.parquet")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 'pip install "sqlalchemy-auditlog[parquet]"' in done.stdout


def test_a_forged_second_copy_of_a_listed_member_is_named(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    """A copy of an entry with its own key and a digest that matches it, put before the real
    one in a seal that lists its members: named, not taken for the real entry."""
    import secrets

    from auditlog.integrity.digest import entry_digest
    from auditlog.lifecycle.archive.verify import entry_values

    write(Session_)
    ids = dated_ids(engine, JAN, dt.timedelta(hours=1))
    auditlog.seal(engine, batch=4)
    archive = tmp_path / "part.jsonl"
    export_archive(engine, archive, before=JAN + dt.timedelta(hours=6))
    records = _lines(archive)
    real = next(r for r in records if r["record"] == "entry" and r["id"] == ids[5])
    key = secrets.token_bytes(16)
    forged = {**real, "user_id": "mallory", "entry_key": key.hex()}
    forged["digest"] = entry_digest(key, entry_values(forged))
    at = records.index(real)
    _rewrite(archive, [*records[:at], forged, *records[at:]])
    problems = verify_archive(archive).problems
    assert sorted((p.kind, p.entry_id) for p in problems) == [
        ("archive_changed", ids[5]),
        ("entry_changed", ids[5]),
    ]


def test_seals_far_apart_or_repeated_in_an_archive_are_named_once(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)  # seals 1-3
    records = _lines(archive)
    seals = [r for r in records if r["record"] == "seal"]
    seals[-1]["seq"] = 2**40
    far = tmp_path / "far.jsonl"
    _rewrite(far, records)
    report = verify_archive(far)
    gaps = [p for p in report.problems if p.kind == "seal_removed"]
    assert [p.detail for p in gaps if p.seal == 3] == [
        f"seals 3 to {2**40 - 1} are missing ({2**40 - 3} seals) from the archive",
        "seal 3 holds archived entries but is missing from the archive",
    ]
    assert report.seals == 3

    repeated = tmp_path / "repeated.jsonl"
    records = _lines(tmp_path / "a.jsonl")
    seal = next(r for r in records if r["record"] == "seal")
    at = records.index(seal)
    _rewrite(repeated, [*records[: at + 1], dict(seal), *records[at + 1 :]])
    problems = verify_archive(repeated).problems
    assert [(p.kind, p.seal) for p in problems] == [("archive_changed", seal["seq"])]


def test_tenant_archives_imported_in_turn_keep_an_erasure_provable(
    engine: Engine, Session_: sessionmaker[Session], target: Engine, tmp_path: Path
) -> None:
    """The first tenant's import records the seals' other members by digest only; the second
    fills in their keys, and what an erasure kept of an erased one."""
    write(Session_)
    auditlog.seal(engine)
    auditlog.erase(engine, user_id="user 3", reason="request 12")  # a globex entry
    erased = auditlog.verify(engine).erased
    assert len(erased) == 1
    for tenant in ("acme", "globex"):
        export_archive(engine, tmp_path / f"{tenant}.jsonl", tenant_id=tenant)
        import_archive(target, tmp_path / f"{tenant}.jsonl")
    report = auditlog.verify(target)
    assert report.intact, report.problems
    assert report.erased == erased and report.sealed == 9


def _edit(kind: str, name: str, value: Any) -> Any:
    def edit(records: list[dict[str, Any]]) -> None:
        record = next(r for r in records if r["record"] == kind)
        record[name] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_edit("header", "before", "yesterday"), "the header's before is not a time"),
        (_edit("header", "before", "2025-01-01T00:00:00"), "the header's before is not a time"),
        (_edit("header", "content_types", "all"), "content_types"),
        (_edit("header", "content_types", [{"id": "1", "name": "x"}]), "content_types"),
        (_edit("entry", "timestamp", "noon"), "noon"),
        (_edit("entry", "timestamp", "2025-01-01T00:00:00"), "timestamp without a UTC offset"),
        (_edit("entry", "timestamp", "99999-01-01T00:00:00+00:00"), "ValueError"),
        (_edit("entry", "id", "not an id"), "ValueError"),
        (_edit("entry", "content_type", "3"), "content_type is not an integer"),
        (_edit("entry", "user_id", 12), "user_id is not text"),
        (_edit("entry", "seal", 2**40), "seal is not a seal number"),
        (_edit("seal", "sealed_at", "then"), "then"),
        (_edit("seal", "seq", "1"), "seq is not an integer"),
        (_edit("seal", "seq", 2**40), "seq or entries out of range"),
        (_edit("seal", "members", [["one"]]), "members are not"),
        (_edit("seal", "pruned", [1]), "pruned is not a list"),
        (_edit("entry", "action_type", None), "IntegrityError"),
    ],
)
def test_a_malformed_record_is_refused_with_its_reason_and_nothing_imported(
    engine: Engine,
    Session_: sessionmaker[Session],
    target: Engine,
    tmp_path: Path,
    edit: Any,
    named: str,
) -> None:
    archive = tmp_path / "a.jsonl"
    _sealed_archive(engine, Session_, archive)
    records = _lines(archive)
    edit(records)
    malformed = tmp_path / "malformed.jsonl"
    _rewrite(malformed, records)
    with pytest.raises(ArchiveError, match="refused, nothing imported") as refused:
        import_archive(target, malformed)
    assert named in str(refused.value)
    assert all(count in (-1, 0) for count in _counts(target))


def test_entries_outside_the_headers_selection_are_named(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    """The header says whose entries and up to when: an archive whose header was rewritten (or
    whose entries were added from elsewhere) does not pass for the selection it names."""
    write(Session_)
    auditlog.seal(engine)
    archive = tmp_path / "globex.jsonl"
    export_archive(engine, archive, tenant_id="globex")
    records = _lines(archive)
    ids = [r["id"] for r in records if r["record"] == "entry"]
    assert len(ids) == 2 and verify_archive(archive).intact

    records[0]["tenant_id"] = "acme"
    _rewrite(archive, records)
    problems = verify_archive(archive).problems
    assert [(p.kind, p.entry_id) for p in problems] == [("archive_changed", i) for i in ids]
    assert "is not of the archive's tenant 'acme'" in problems[0].detail

    records[0]["tenant_id"] = "globex"
    first = dt.datetime.fromtimestamp(ULID.from_str(ids[1]).milliseconds / 1000, dt.timezone.utc)
    records[0]["before"] = first.isoformat()
    _rewrite(archive, records)
    problems = verify_archive(archive).problems
    assert [(p.kind, p.entry_id) for p in problems] == [("archive_changed", ids[1])]
    assert "is not older than the archive's before" in problems[0].detail
