"""Retention: :func:`prune` removes the entries older than a date, in short transactions.

A run removes at most ``batch_size`` entries per transaction, oldest first, and commits each
batch before reading the next, so no lock is held for long and the application's writers (whose
new entries are far from the range being removed) never wait more than one batch. Every batch
adds its counts to the run's ``audit_prune`` row in the same transaction: a run that is
interrupted has removed and recorded whole batches only, and running it again goes on.

With seals, the entries removed stay provable as *pruned*: a whole-log prune is described by its
``before`` alone (every sealed entry older than it was removed by it), a prune limited to one
tenant lists the sealed entries it removed in ``audit_prune_entry``. ``verify`` reports both as
pruned, with their count, not as removed. A batch takes the lock a sealer takes, so a seal never
includes an entry that a concurrent batch is removing.

On a PostgreSQL table partitioned by month (``lifecycle/partitions.py``), the months entirely
older than ``before`` are detached and dropped whole first; the rest goes by batches.
See docs/lifecycle.md.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from ulid import ULID

from ..integrity.guard import maintenance
from ..integrity.seal import create_integrity_tables
from ..integrity.tables import seal_entry_table as _member
from ..integrity.tables import seal_table as _seal
from ..models import audit_log_table as _log
from ..models import utc_bound
from .tables import prune_entry_table, prune_table

__all__ = [
    "BATCH_SIZE",
    "MAX_BATCH_SIZE",
    "PruneProgress",
    "PruneResult",
    "cutoff",
    "prune",
    "pruned_before",
]

#: Entries removed per transaction by default, and at most; the pause between two batches by
#: default (seconds): together, a prune of about 100,000 entries a second that leaves the
#: application's writers most of the database (docs/performance.md, "Retention").
BATCH_SIZE = 2_000
PAUSE = 0.01
MAX_BATCH_SIZE = 1_000_000
_LOCKING = frozenset({"postgresql", "mysql", "mariadb"})
#: How long detaching a month may wait for the application's transactions (seconds), and how
#: many times it is tried before the month goes by batches.
DETACH_LOCK_TIMEOUT = 1.0
DETACH_ATTEMPTS = 3
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class PruneProgress:
    """How far a run got, after each committed batch."""

    deleted: int
    sealed: int
    batches: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune` removed: ``deleted`` entries (``sealed`` of them were sealed), in
    ``batches`` transactions, plus whole ``partitions`` dropped; ``prune_id`` is the run's row in
    ``audit_prune``."""

    prune_id: str
    before: dt.datetime
    tenant_id: str | None
    deleted: int
    sealed: int
    batches: int
    partitions: tuple[str, ...]
    seconds: float


def cutoff(before: Any, *, what: str = "before") -> dt.datetime:
    """``before`` as an aware UTC datetime truncated to the millisecond (naive means UTC), the
    precision of an entry id's time; a ValueError naming ``what`` when it is not a datetime or
    lies in the future."""
    if not isinstance(before, dt.datetime):
        raise ValueError(f"{what} must be a datetime, not {type(before).__name__}")
    moment = utc_bound(before)  # beyond the years 1-9999 in UTC: the nearest time there is
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if moment > dt.datetime.now(dt.timezone.utc):
        raise ValueError(f"{what} {moment.isoformat()} is in the future")
    return moment


def prune(
    bind: Engine | Connection,
    *,
    before: dt.datetime,
    tenant_id: str | None = None,
    batch_size: int = BATCH_SIZE,
    reason: str | None = None,
    progress: Callable[[PruneProgress], None] | None = None,
    pause: float = PAUSE,
) -> PruneResult:
    """Remove every entry older than ``before`` (of ``tenant_id`` only, when given), at most
    ``batch_size`` per transaction; see the module's documentation. ``progress`` is called after
    each batch. ``pause`` seconds pass between two batches (10 ms by default): it spreads
    the prune's writes out, for the application's writers. Safe to interrupt and to run again."""
    moment = cutoff(before, what="prune(): before")
    if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
        raise ValueError(f"prune(): tenant_id must be a non-empty string, not {tenant_id!r}")
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ValueError(
            f"prune(): batch_size must be an integer from 1 to {MAX_BATCH_SIZE:,}, "
            f"not {batch_size!r}"
        )
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= 60:
        raise ValueError(f"prune(): pause must be a number of seconds from 0 to 60, not {pause!r}")
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return _Run(connection, moment, tenant_id, batch_size, progress, pause).run(reason)
    if bind.in_transaction():
        raise ValueError(
            "prune(): the connection is inside a transaction; pruning commits its own batches, "
            "so give an engine or a connection with no transaction begun"
        )
    return _Run(bind, moment, tenant_id, batch_size, progress, pause).run(reason)


def pruned_before(connection: Connection, tenant_id: str | None = None) -> dt.datetime | None:
    """The newest cutoff of the prunes that may have removed entries of ``tenant_id`` (those of
    every tenant, and that tenant's own; with no tenant, every prune), or None when none did."""
    if not sa.inspect(connection).has_table(prune_table.name):
        return None
    query = sa.select(sa.func.max(prune_table.c.pruned_before)).where(prune_table.c.kind == "prune")
    if tenant_id is not None:
        query = query.where(
            sa.or_(prune_table.c.tenant_id.is_(None), prune_table.c.tenant_id == tenant_id)
        )
    found: dt.datetime | None = connection.execute(query).scalar_one()
    return found


def create_lifecycle_tables(connection: Connection) -> None:
    """The prune tables (and the seal tables they refer to), on a database made before them, in
    a transaction of their own."""
    create_integrity_tables(connection)
    with connection.begin():
        prune_table.metadata.create_all(
            connection, tables=[prune_table, prune_entry_table], checkfirst=True
        )


class _Run:
    def __init__(
        self,
        connection: Connection,
        before: dt.datetime,
        tenant_id: str | None,
        batch_size: int,
        progress: Callable[[PruneProgress], None] | None,
        pause: float = 0.0,
    ) -> None:
        if connection.dialect.name in ("mysql", "mariadb"):
            # no gap locks: the writers' inserts never wait for a batch's range
            connection = connection.execution_options(isolation_level="READ COMMITTED")
        self.connection = connection
        self.before = before
        self.tenant_id = tenant_id
        self.batch_size = batch_size
        self.progress = progress
        self.pause = pause
        self.prune_id = str(ULID())
        self.deleted = self.sealed = self.batches = 0
        self.partitions: tuple[str, ...] = ()
        self.started = time.monotonic()

    def run(self, reason: str | None) -> PruneResult:
        connection = self.connection
        create_lifecycle_tables(connection)
        with connection.begin():
            connection.execute(
                sa.insert(prune_table).values(
                    id=self.prune_id,
                    kind="prune",
                    started_at=dt.datetime.now(dt.timezone.utc),
                    pruned_before=self.before,
                    tenant_id=self.tenant_id,
                    entries=0,
                    sealed=0,
                    reason=reason,
                )
            )
        if self.tenant_id is None and connection.dialect.name == "postgresql":
            self._drop_partitions()
        self._batches()
        with connection.begin(), maintenance(connection):
            connection.execute(
                sa.update(prune_table)
                .where(prune_table.c.id == self.prune_id)
                .values(finished_at=dt.datetime.now(dt.timezone.utc))
            )
        return PruneResult(
            self.prune_id,
            self.before,
            self.tenant_id,
            self.deleted,
            self.sealed,
            self.batches,
            self.partitions,
            time.monotonic() - self.started,
        )

    def _in_range(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        conditions = [table.c.timestamp < self.before]
        if self.tenant_id is not None:
            conditions.append(table.c.tenant_id == self.tenant_id)
        return conditions

    def _lock_seals(self) -> None:
        """Wait for a running sealer and keep the next one out until this batch commits."""
        if self.connection.dialect.name in _LOCKING:
            self.connection.execute(
                sa.select(_seal.c.seq).order_by(_seal.c.seq.desc()).limit(1).with_for_update()
            )

    def _batches(self) -> None:
        """Batch after batch, each starting where the previous one ended (the entries before it
        are gone, though their index entries stay until a vacuum: starting from the range's
        beginning again would walk them all, batch after batch). Then one pass from the
        beginning, for entries that committed in the range during the run."""
        start: Any = None
        swept = False
        while True:
            start = self._batch(start)
            if self.pause:
                time.sleep(self.pause)
            if start is None:
                if swept:
                    return
                swept = True

    def _batch(self, start: Any) -> Any:
        """Remove the next batch (from ``start``, a time, when given) in its own transaction;
        returns the time to start the next one from, None when the range is done."""
        connection = self.connection
        with connection.begin(), maintenance(connection):
            if connection.dialect.name == "postgresql":
                # the batch's commit does not wait for its WAL to reach the disk: a writer's
                # commit then never queues behind a prune's flush (a crash can undo the last
                # batches, bookkeeping included, and the prune goes on where it is run again)
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            self._lock_seals()
            conditions = self._in_range(_log)
            if start is not None:
                conditions.append(_log.c.timestamp >= start)
            last = connection.execute(
                sa.select(_log.c.timestamp, _log.c.id)
                .where(*conditions)
                .order_by(_log.c.timestamp, _log.c.id)
                .offset(self.batch_size - 1)
                .limit(1)
            ).first()
            if last is not None:  # a full batch: up to its last entry
                conditions += [
                    _log.c.timestamp <= last.timestamp,  # the index range's end
                    sa.or_(
                        _log.c.timestamp < last.timestamp,
                        sa.and_(_log.c.timestamp == last.timestamp, _log.c.id <= last.id),
                    ),
                ]
            sealed = self._record_sealed(conditions)
            deleted = connection.execute(sa.delete(_log).where(*conditions)).rowcount
            if deleted:
                self._count(deleted, sealed)
        if deleted:
            self.deleted += deleted
            self.sealed += sealed
            self.batches += 1
            if self.progress is not None:
                self.progress(
                    PruneProgress(
                        self.deleted, self.sealed, self.batches, time.monotonic() - self.started
                    )
                )
        return last.timestamp if last is not None else None

    def _record_sealed(self, conditions: list[sa.ColumnElement[bool]]) -> int:
        """How many of the batch's entries are sealed; for a tenant's prune, their ids listed."""
        joined = _log.join(_member, _member.c.entry_id == _log.c.id)
        sealed = int(
            self.connection.execute(
                sa.select(sa.func.count()).select_from(joined).where(*conditions)
            ).scalar_one()
        )
        if sealed and self.tenant_id is not None:
            # (an INSERT ... SELECT has no reliable row count on every driver: counted above)
            self.connection.execute(
                sa.insert(prune_entry_table).from_select(
                    ["entry_id", "prune_id"],
                    sa.select(
                        _log.c.id, sa.literal(self.prune_id, prune_entry_table.c.prune_id.type)
                    )
                    .select_from(joined)
                    .where(*conditions),
                )
            )
        return sealed

    def _count(self, deleted: int, sealed: int, partitions: str | None = None) -> None:
        values: dict[str, Any] = {
            "entries": prune_table.c.entries + deleted,
            "sealed": prune_table.c.sealed + sealed,
        }
        if partitions is not None:
            values["partitions"] = partitions
        self.connection.execute(
            sa.update(prune_table).where(prune_table.c.id == self.prune_id).values(**values)
        )

    def _drop_partitions(self) -> None:
        """Whole months older than ``before``, on a partitioned table: detached and dropped.

        Detaching a partition locks ``audit_log`` exclusively, and the lock waits for every
        transaction writing to it; meanwhile new writers queue behind it. So it gives up after
        :data:`DETACH_LOCK_TIMEOUT` and tries again, :data:`DETACH_ATTEMPTS` times in all; if a
        long transaction keeps it out every time, the months go by batches instead."""
        from .partitions import is_partitioned

        connection = self.connection
        with connection.begin():
            if not is_partitioned(connection):
                return
        for attempt in range(1, DETACH_ATTEMPTS + 1):
            try:
                with connection.begin(), maintenance(connection):
                    timeout_ms = int(DETACH_LOCK_TIMEOUT * 1000)
                    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
                    found = self._drop_due_partitions()
                break
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                if attempt == DETACH_ATTEMPTS:
                    return  # by batches
                time.sleep(DETACH_LOCK_TIMEOUT * attempt)
        if found is None:
            return
        deleted, sealed = found
        self.deleted += deleted
        self.sealed += sealed
        if self.progress is not None:
            self.progress(
                PruneProgress(
                    self.deleted, self.sealed, self.batches, time.monotonic() - self.started
                )
            )

    def _drop_due_partitions(self) -> tuple[int, int] | None:
        """In the transaction begun: drop the months due; (entries, sealed) they held."""
        from .partitions import drop_partitions, list_partitions

        connection = self.connection
        due = [
            p
            for p in list_partitions(connection)
            if p.upper is not None and p.lower is not None and p.upper <= self.before
        ]
        if not due:
            return None
        self._lock_seals()
        sealed = 0
        preparer = connection.dialect.identifier_preparer
        for partition in due:
            sealed += connection.exec_driver_sql(
                f"SELECT count(*) FROM {preparer.quote(partition.name)} e "
                f"JOIN {preparer.format_table(_member)} m ON m.entry_id = e.id"
            ).scalar_one()
        dropped = drop_partitions(connection, self.before)
        deleted = sum(count for _, count in dropped)
        self.partitions = tuple(p.name for p, _ in dropped)
        self._count(deleted, sealed, ",".join(self.partitions))
        return deleted, sealed
