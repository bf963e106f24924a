"""Sealing: every committed entry not sealed yet goes into a new seal that chains to the last one.

Each seal is its own short transaction, outside the application's: the write path takes no
new lock and does no new work. A seal

1. locks the newest seal row (``FOR UPDATE`` on PostgreSQL and MariaDB; SQLite has one writer),
   so two sealers take turns;
2. reads, in id order, up to ``batch`` entries that are in no seal (an anti-join on
   ``audit_seal_entry``), from ``late`` before the newest seal on: an entry whose transaction
   committed after newer entries were sealed is sealed now, never skipped; one older than that
   is what ``verify`` calls inserted among sealed entries, and stays unsealed and reported (a
   seal never makes it look genuine). A run therefore reads the recent end of the log, not all
   of it. The following seals of the same run start after the last entry it sealed; an entry
   that commits meanwhile with an older id is the next run's;
3. draws a random key per entry, writes each entry's membership and digest, then the seal row.

An entry is in at most one seal (``audit_seal_entry``'s primary key), and a seal number is taken
once (``audit_seal``'s): a sealer that loses a race to another fails on one of them and starts
its seal again.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from ..capture.writer import can_copy, copy_rows
from ..models import audit_log_table as _log
from ..models import metadata
from ..ulids import ulid_floor
from .digest import GENESIS, Cells, cell, cells_digest_bytes, entries_hash, seal_digest
from .rows import cell_columns, driver_reads, read_cells
from .tables import erasure_table
from .tables import seal_entry_table as _member
from .tables import seal_table as _seal

__all__ = ["BATCH", "LATE", "SealResult", "format_head", "seal"]

#: Entries per seal at most.
BATCH = 10_000
#: How long a transaction may run: an entry committed later than this after newer entries were
#: sealed is not sealed, and ``verify`` reports it as inserted.
LATE = dt.timedelta(hours=1)
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


def seal(bind: Engine | Connection, *, batch: int = BATCH, late: dt.timedelta = LATE) -> SealResult:
    """Seal every committed entry that is not sealed yet, ``batch`` entries per seal; return
    what was sealed and the new head. Entries older than the newest seal by more than ``late``
    (longer than any transaction runs; the same as ``verify``'s) are left to ``verify``, which
    reports them as inserted. Each seal commits on its own: run it from a scheduler or
    ``auditlog seal``, not inside an application transaction."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"seal(): batch must be a positive integer, not {batch!r}")
    if not isinstance(late, dt.timedelta) or late < dt.timedelta(0):
        raise ValueError(f"seal(): late must be a timedelta of 0 or more, not {late!r}")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return _seal_all(connection, batch, late, bind)
    if bind.in_transaction():
        raise ValueError(
            "seal(): the connection is inside a transaction; sealing commits its own, so give "
            "an engine or a connection with no transaction begun"
        )
    return _seal_all(bind, batch, late)


def create_integrity_tables(connection: Connection) -> None:
    """The seal and erasure tables, on a database whose ``audit_log`` was made before them (in a
    transaction of their own: the connection must have none begun)."""
    with connection.begin():
        metadata.create_all(connection, tables=[_seal, _member, erasure_table], checkfirst=True)


def _seal_all(
    connection: Connection, batch: int, late: dt.timedelta, engine: Engine | None = None
) -> SealResult:
    create_integrity_tables(connection)
    seals = entries = 0
    head: str | None = None
    after: str | None = None  # the last entry sealed by this run: its next seal starts there
    ahead = None
    if engine is not None and driver_reads(connection) and _spare_connection(engine):
        ahead = _ReadAhead(engine, batch)
    try:
        while True:
            made = _seal_once(connection, batch, after, late, ahead)
            if made is None:
                break
            count, head, after = made
            seals += 1
            entries += count
            if count < batch:
                break
    finally:
        if ahead is not None:
            ahead.close()
    if head is None:
        head = current_head(connection)
    return SealResult(seals, entries, head)


def _spare_connection(engine: Engine) -> bool:
    """Whether the engine's pool can give a second connection without waiting for one (a pool
    of one connection, say, could not: the run reads in line then)."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return True
    most = getattr(pool, "_max_overflow", -1)  # -1: no limit
    return most < 0 or pool.checkedout() < pool.size() + most


class _ReadAhead:
    """The next seal's entries, read on a connection of its own by a thread while this run
    writes the current seal: the server's work on the query overlaps the hashing.

    Reading ahead is as safe as reading at the start of the next seal: entries committed
    meanwhile with smaller ids are the next run's (as they would be anyway), and entries that
    another sealer took meanwhile make the seal's insert fail and be made again from a fresh
    read (:func:`_seal_once`)."""

    def __init__(self, engine: Engine, batch: int) -> None:
        self.engine, self.batch = engine, batch
        self.after: str | None = None
        self.thread: threading.Thread | None = None
        self.entries: list[Cells] | None = None
        self.connection: Connection | None = None
        self.failed = False

    def start(self, after: str) -> None:
        if self.failed:  # once the second connection failed, the run reads in line
            return
        self.wait()
        self.after, self.entries = after, None
        self.thread = threading.Thread(target=self._read, name="auditlog-seal", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            if self.connection is None:
                self.connection = self.engine.connect()
            with self.connection.begin():
                query = _unsealed(self.connection, self.batch).where(_log.c.id > self.after)
                self.entries = _entries(self.connection, query)
        except Exception:  # the seal reads them itself (and meets the error, if it lasts)
            self.entries, self.failed = None, True

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def take(self, after: str | None) -> list[Cells] | None:
        """The entries read after ``after``, or None (not read ahead, or after another id)."""
        self.wait()
        entries, self.entries = self.entries, None
        return entries if after is not None and after == self.after else None

    def close(self) -> None:
        self.wait()
        if self.connection is not None:
            self.connection.close()


def _unsealed(connection: Connection, batch: int) -> sa.Select[Any]:
    """The first ``batch`` entries in no seal, in id order, as digest input."""
    return (
        sa.select(*cell_columns(connection))
        .select_from(_log.outerjoin(_member, _member.c.entry_id == _log.c.id))
        .where(_member.c.entry_id.is_(None))
        .order_by(_log.c.id)
        .limit(batch)
    )


def _entries(connection: Connection, query: sa.Select[Any]) -> list[Cells]:
    return [cells for cells, _ in read_cells(connection, query) if cells is not None]


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
    connection: Connection,
    batch: int,
    after: str | None,
    late: dt.timedelta,
    ahead: _ReadAhead | None = None,
) -> tuple[int, str, str] | None:
    """One seal in its own transaction: (entries sealed, new head, last entry id), or None if
    none was due."""
    for attempt in range(_RETRIES):
        try:
            with connection.begin():
                _take_write_lock(connection)
                return _write_seal(connection, batch, after, late, ahead)
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            # another sealer took this seal number or these entries (or, on MariaDB, both
            # inserted the first seal into the same empty gap: a deadlock, rolled back)
            if isinstance(exc, sa.exc.OperationalError) and not _deadlock(exc):
                raise
            if ahead is not None:
                ahead.take(None)  # read again, not ahead
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _take_write_lock(connection: Connection) -> None:
    """Make two sealers take turns before either chooses its entries and number.

    PostgreSQL: a transaction-level advisory lock (the newest seal's row lock alone lets a
    sealer that waited on it read the seal before the one it waited for, and lose the race).
    SQLite: the database's write lock (``BEGIN IMMEDIATE``; the driver begins its transactions
    lazily, at the first write; where the application's engine begins them itself, its own kind
    of transaction is used). MariaDB and MySQL: the newest seal's row lock, taken next."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    elif dialect == "sqlite":
        dbapi: Any = connection.connection.dbapi_connection
        if not getattr(dbapi, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


#: The advisory lock sealers take on PostgreSQL (a fixed number: "auditlog" in ASCII).
_LOCK_KEY = int.from_bytes(b"auditlog", "big") >> 1


def _deadlock(exc: sa.exc.OperationalError) -> bool:
    """MariaDB's and MySQL's deadlock and lock wait timeout: the transaction was rolled back."""
    code = getattr(exc.orig, "args", (None,))[0]
    return code in (1213, 1205)


def _write_seal(
    connection: Connection,
    batch: int,
    after: str | None,
    late: dt.timedelta,
    ahead: _ReadAhead | None = None,
) -> tuple[int, str, str] | None:
    last_query = (
        sa.select(_seal.c.seq, _seal.c.digest, _seal.c.sealed_at)
        .order_by(_seal.c.seq.desc())
        .limit(1)
    )
    if connection.dialect.name in _LOCKING:
        last_query = last_query.with_for_update()
    last = connection.execute(last_query).first()
    seq, previous = (last.seq + 1, last.digest) if last is not None else (1, GENESIS)
    entries = ahead.take(after) if ahead is not None else None
    if entries is None:
        unsealed = _unsealed(connection, batch)
        if after is not None:  # later batches of one run (earlier ids left now: the next run's)
            unsealed = unsealed.where(_log.c.id > after)
        elif last is not None:  # older entries in no seal were inserted: verify names them
            floor = _aware(last.sealed_at) - late
            unsealed = unsealed.where(_log.c.id >= ulid_floor(floor), _log.c.timestamp >= floor)
        entries = _entries(connection, unsealed)
    if not entries:
        return None
    if ahead is not None and len(entries) == batch:  # more may follow: read them meanwhile
        ahead.start(cell(entries[-1], "id").decode())  # type: ignore[union-attr]
    hashed = entries_hash()

    def members() -> Iterator[tuple[str, int, str, str]]:
        """Each entry's membership, its key drawn and its digest made as the rows are sent."""
        keys = secrets.token_bytes(16 * len(entries))  # one draw for all
        for i, cells in enumerate(entries):
            key = keys[16 * i : 16 * i + 16]
            digest = cells_digest_bytes(key, cells)
            hashed.update(digest)
            yield cells[0].decode(), seq, key.hex(), digest.hex()  # type: ignore[union-attr]

    _insert_members(connection, members())
    sealed_at = dt.datetime.now(dt.timezone.utc)
    entries_hex = hashed.hexdigest()
    digest = seal_digest(seq, sealed_at, len(entries), entries_hex, previous)
    connection.execute(
        sa.insert(_seal).values(
            seq=seq,
            sealed_at=sealed_at,
            entries=len(entries),
            entries_digest=entries_hex,
            previous=previous,
            digest=digest,
        )
    )
    return len(entries), format_head(seq, digest), cell(entries[-1], "id").decode()  # type: ignore[union-attr]


def _aware(moment: dt.datetime) -> dt.datetime:
    """A stored time as UTC (MariaDB and SQLite give it naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def _insert_members(connection: Connection, members: Iterator[tuple[str, int, str, str]]) -> None:
    """The members of a seal (values in ``_MEMBER_COLUMNS`` order): one COPY stream where the
    connection takes one (the server inserts while the next digests are made), else an
    executemany."""
    if can_copy(connection):
        copy_rows(connection, _member, _MEMBER_COLUMNS, members)
        return
    connection.execute(
        sa.insert(_member), [dict(zip(_MEMBER_COLUMNS, m, strict=True)) for m in members]
    )
