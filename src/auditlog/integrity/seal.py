"""Sealing: every committed entry not sealed yet goes into a new seal that chains to the last one.

Each seal is its own short transaction, outside the application's: the write path takes no
new lock and does no new work. A seal

1. locks the newest seal row (``FOR UPDATE`` on PostgreSQL and MariaDB; SQLite has one writer),
   so two sealers take turns;
2. reads, in id order, up to ``batch`` entries that are in no seal (an anti-join on
   ``audit_seal_entry``): whatever their ids, so an entry whose transaction committed after newer
   entries were sealed is sealed now, never skipped. The following seals of the same run start
   after the last entry it sealed (one scan of the log per run, not per seal); an entry that
   commits meanwhile with an older id is the next run's;
3. draws a random key per entry, writes each entry's membership and digest, then the seal row.

An entry is in at most one seal (``audit_seal_entry``'s primary key), and a seal number is taken
once (``audit_seal``'s): a sealer that loses a race to another fails on one of them and starts
its seal again.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..capture.writer import can_copy, copy_rows
from ..models import audit_log_table as _log
from ..models import metadata, ulid_hex
from .digest import GENESIS, entries_digest, entry_digest, row_columns, seal_digest
from .tables import erasure_table
from .tables import seal_entry_table as _member
from .tables import seal_table as _seal

__all__ = ["BATCH", "SealResult", "format_head", "seal"]

#: Entries per seal at most.
BATCH = 10_000
_RETRIES = 5
_MEMBER_COLUMNS = ("entry_id", "seal_seq", "entry_key", "digest")
_LOCKING = frozenset({"postgresql", "mysql", "mariadb"})


@dataclass(frozen=True, slots=True)
class SealResult:
    """What :func:`seal` did: seals and entries added now, and the head after it."""

    seals: int
    entries: int
    #: ``"<seq>:<digest>"`` of the newest seal (None while nothing is sealed): publish it
    head: str | None


def format_head(seq: int, digest: str) -> str:
    """The published form of a seal: its number and its digest."""
    return f"{seq}:{digest}"


def seal(bind: Engine | Connection, *, batch: int = BATCH) -> SealResult:
    """Seal every committed entry that is not sealed yet, ``batch`` entries per seal; return
    what was sealed and the new head. Each seal commits on its own: run it from a scheduler or
    ``auditlog seal``, not inside an application transaction."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"seal(): batch must be a positive integer, not {batch!r}")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return _seal_all(connection, batch)
    if bind.in_transaction():
        raise ValueError(
            "seal(): the connection is inside a transaction; sealing commits its own, so give "
            "an engine or a connection with no transaction begun"
        )
    return _seal_all(bind, batch)


def create_integrity_tables(connection: Connection) -> None:
    """The seal and erasure tables, on a database whose ``audit_log`` was made before them (in a
    transaction of their own: the connection must have none begun)."""
    with connection.begin():
        metadata.create_all(connection, tables=[_seal, _member, erasure_table], checkfirst=True)


def _seal_all(connection: Connection, batch: int) -> SealResult:
    create_integrity_tables(connection)
    seals = entries = 0
    head: str | None = None
    after: str | None = None  # the last entry sealed by this run: its next seal starts there
    while True:
        made = _seal_once(connection, batch, after)
        if made is None:
            break
        count, head, after = made
        seals += 1
        entries += count
        if count < batch:
            break
    if head is None:
        head = current_head(connection)
    return SealResult(seals, entries, head)


def current_head(connection: Connection) -> str | None:
    """The newest seal as ``"<seq>:<digest>"``, or None."""
    began = not connection.in_transaction()
    row = connection.execute(
        sa.select(_seal.c.seq, _seal.c.digest).order_by(_seal.c.seq.desc()).limit(1)
    ).first()
    if began:
        connection.rollback()
    return format_head(row.seq, row.digest) if row is not None else None


def _seal_once(
    connection: Connection, batch: int, after: str | None
) -> tuple[int, str, str] | None:
    """One seal in its own transaction: (entries sealed, new head, last entry id), or None if
    none was due."""
    for attempt in range(_RETRIES):
        try:
            with connection.begin():
                return _write_seal(connection, batch, after)
        except sa.exc.IntegrityError:  # another sealer took this seal number or these entries
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _write_seal(
    connection: Connection, batch: int, after: str | None
) -> tuple[int, str, str] | None:
    last_query = sa.select(_seal.c.seq, _seal.c.digest).order_by(_seal.c.seq.desc()).limit(1)
    if connection.dialect.name in _LOCKING:
        last_query = last_query.with_for_update()
    last = connection.execute(last_query).first()
    seq, previous = (last.seq + 1, last.digest) if last is not None else (1, GENESIS)
    unsealed = (
        sa.select(*row_columns(_log))
        .select_from(_log.outerjoin(_member, _member.c.entry_id == _log.c.id))
        .where(_member.c.entry_id.is_(None))
        .order_by(_log.c.id)
        .limit(batch)
    )
    if after is not None:  # later batches of one run (earlier ids left now: the next run's)
        unsealed = unsealed.where(_log.c.id > after)
    rows = connection.execute(unsealed).mappings()
    members: list[dict[str, Any]] = []
    for row in rows:
        key = secrets.token_bytes(16)
        members.append(
            {
                "entry_id": row["id"],
                "seal_seq": seq,
                "entry_key": key.hex(),
                "digest": entry_digest(key, row),
            }
        )
    if not members:
        return None
    sealed_at = dt.datetime.now(dt.timezone.utc)
    entries_hex = entries_digest(m["digest"] for m in members)
    digest = seal_digest(seq, sealed_at, len(members), entries_hex, previous)
    _insert_members(connection, members)
    connection.execute(
        sa.insert(_seal).values(
            seq=seq,
            sealed_at=sealed_at,
            entries=len(members),
            entries_digest=entries_hex,
            previous=previous,
            digest=digest,
        )
    )
    return len(members), format_head(seq, digest), members[-1]["entry_id"]


def _insert_members(connection: Connection, members: list[dict[str, Any]]) -> None:
    """The members of a seal: one COPY stream where the connection takes one, else an
    executemany."""
    if can_copy(connection):
        copy_rows(
            connection,
            _member,
            _MEMBER_COLUMNS,
            (
                [ulid_hex(m["entry_id"]), *(m[name] for name in _MEMBER_COLUMNS[1:])]
                for m in members
            ),
        )
        return
    connection.execute(sa.insert(_member), members)
