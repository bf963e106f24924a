"""Seals made under version 1 of the digests (by earlier releases) beside new ones (version 2):
verified, erased and archived alike, on every backend."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog import AuditLog
from auditlog.integrity import seal_entry_table, seal_table
from auditlog.integrity.digest import (
    GENESIS,
    entries_digest,
    entry_digest,
    row_columns,
    seal_digest,
    seal_version,
)
from auditlog.lifecycle import export_archive, verify_archive

from ..helpers import entries
from ..models import Tag

LOG = AuditLog.__table__


def _write(maker: sessionmaker[Session], ids: range) -> None:
    auditlog.register(Tag)
    for i in ids:
        with auditlog.audit_context(user_id="ada" if i % 2 else "grace"), maker.begin() as s:
            s.add(Tag(id=i, label=f"tag {i}"))


def _as_version_1(engine: Engine) -> None:
    """Make every seal what a release writing version 1 made of the same entries and keys."""
    members = seal_entry_table
    with engine.begin() as conn:
        previous = GENESIS
        for seal in conn.execute(sa.select(seal_table).order_by(seal_table.c.seq)).all():
            rows = conn.execute(
                sa.select(members.c.entry_id, members.c.entry_key, *row_columns(LOG))
                .join(LOG, LOG.c.id == members.c.entry_id)
                .where(members.c.seal_seq == seal.seq)
                .order_by(members.c.entry_id)
            ).mappings()
            digests = []
            for row in rows:
                digest = entry_digest(bytes.fromhex(row["entry_key"]), row, 1)
                digests.append(digest)
                conn.execute(
                    sa.update(members)
                    .where(members.c.entry_id == row["entry_id"])
                    .values(digest=digest)
                )
            entries_hex = entries_digest(digests)
            digest = seal_digest(seal.seq, seal.sealed_at, len(digests), entries_hex, previous, 1)
            conn.execute(
                sa.update(seal_table)
                .where(seal_table.c.seq == seal.seq)
                .values(entries_digest=entries_hex, previous=previous, digest=digest)
            )
            previous = digest


def _versions(engine: Engine) -> list[int | None]:
    with engine.connect() as conn:
        seals = conn.execute(sa.select(seal_table).order_by(seal_table.c.seq)).all()
    return [
        seal_version(s.seq, s.sealed_at, s.entries, s.entries_digest, s.previous, s.digest)
        for s in seals
    ]


def test_seals_of_version_1_and_2_verify_erase_and_archive_together(
    engine: Engine, Session_: sessionmaker[Session], tmp_path: Path
) -> None:
    _write(Session_, range(1, 5))
    auditlog.seal(engine, batch=2)
    _as_version_1(engine)
    _write(Session_, range(5, 8))
    head = auditlog.seal(engine, batch=2).head  # new seals follow the old chain
    assert _versions(engine) == [1, 1, 2, 2]
    assert auditlog.verify(engine, head=head).intact

    archive = tmp_path / "both.jsonl"
    export_archive(engine, archive)
    assert verify_archive(archive, head=head).intact

    erased = auditlog.erase(engine, user_id="ada")  # entries under both versions
    assert erased.entries == 4
    report = auditlog.verify(engine, head=head)
    assert report.intact, report.problems
    assert len(report.erased) == 4

    old = entries(engine)[0].id  # sealed under version 1
    with engine.begin() as conn:
        conn.execute(sa.update(LOG).where(LOG.c.id == old).values(object_id="99"))
    problems = auditlog.verify(engine).problems
    assert [(p.kind, p.entry_id, p.seal) for p in problems] == [("entry_changed", old, 1)]
