"""Committed entries in a safe order, for any sink: the relay's reading and bookkeeping.

Each round reads the committed entries at or above the horizon that are not listed as relayed
(an index range and an anti-join, in id order, at most ``batch_size``); once the sink has
acknowledged them, one transaction lists them as relayed, stores the sink's position and moves
the horizon up to the safe bound (``horizon.py``). Rolled-back entries are never read: every
read is of committed rows only (READ COMMITTED, or SQLite's single writer).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..models import audit_log_table, content_type_table, ulid_hex
from ..ulids import ulid_floor, ulid_text
from .horizon import DEFAULT_MARGIN, SafeBound, safe_bound
from .messages import COLUMNS, PG_BODY, RelayedEntry, pg_relayed_entry, relayed_entry
from .tables import relay_entry_table, relay_table

__all__ = [
    "BATCH_SIZE",
    "DEFAULT_NAME",
    "RelaySource",
    "RelayedEntry",
    "committed_entries",
    "ulid_floor",
]

#: Entries read, sent and recorded per round.
BATCH_SIZE = 2000
#: The relay name used when none is given.
DEFAULT_NAME = "default"

_log = audit_log_table
_member = relay_entry_table


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _unrelayed(name: str, horizon: str | None) -> Any:
    """The condition of a committed entry not relayed yet by relay ``name``."""
    listed = (
        sa.select(sa.literal(1))
        .where(_member.c.relay == name, _member.c.entry_id == _log.c.id)
        .exists()
    )
    condition = ~listed
    if horizon is not None:
        condition = sa.and_(_log.c.id >= horizon, condition)
    return condition


class RelaySource:
    """The entries relay ``name`` has not relayed yet, and the record of what it relayed.

    Use :meth:`start` once, then rounds of :meth:`read` and, after the sink acknowledged,
    :meth:`record`. Several relays with different names keep separate positions.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = DEFAULT_NAME,
        batch_size: int = BATCH_SIZE,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        if not name or len(name) > 64:
            raise ValueError(f"name: a relay name is 1 to 64 characters, got {name!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size: at least 1, got {batch_size}")
        if margin < 0:
            raise ValueError(f"margin: a number of seconds >= 0, got {margin}")
        if engine.dialect.name in {"postgresql", "mysql", "mariadb"}:
            engine = engine.execution_options(isolation_level="READ COMMITTED")
        self.engine = engine
        self.name = name
        self.batch_size = batch_size
        self.margin = margin
        self.horizon: str | None = None
        self.position: int | None = None
        self.note: str | None = None
        self._models: dict[int, str] = {}

    def start(self) -> int | None:
        """Create the relay's row when missing; return the sink position last recorded."""
        relay_table.create(self.engine, checkfirst=True)
        relay_entry_table.create(self.engine, checkfirst=True)
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(relay_table.c.horizon, relay_table.c.position).where(
                    relay_table.c.name == self.name
                )
            ).first()
            if row is None:
                connection.execute(
                    relay_table.insert().values(
                        name=self.name, relayed=0, started_at=_now(), updated_at=_now()
                    )
                )
            else:
                connection.execute(
                    relay_table.update()
                    .where(relay_table.c.name == self.name)
                    .values(started_at=_now())
                )
                self.horizon, self.position = row.horizon, row.position
        return self.position

    def _model(self, connection: Connection, content_type: int) -> str | None:
        if content_type not in self._models:
            rows = connection.execute(sa.select(content_type_table.c.id, content_type_table.c.name))
            self._models.update({row.id: row.name for row in rows})
        return self._models.get(content_type)

    def read(self, after: str | None = None) -> list[RelayedEntry]:
        """The next committed entries not relayed yet, in id order, at most ``batch_size``;
        only those above ``after`` when given (reading ahead of a batch being sent: entries
        below it that commit meanwhile are read by the next call without ``after``)."""
        condition = _unrelayed(self.name, self.horizon)
        if after is not None:
            condition = sa.and_(condition, _log.c.id > after)
        if self.engine.dialect.name == "postgresql":
            query = (
                sa.select(
                    _log.c.id,
                    _log.c.tenant_id,
                    _log.c.action_type,
                    _log.c.content_type,
                    _log.c.transaction_id,
                    content_type_table.c.name,
                    PG_BODY,
                )
                .select_from(
                    _log.outerjoin(
                        content_type_table, content_type_table.c.id == _log.c.content_type
                    )
                )
                .where(condition)
                .order_by(_log.c.id)
                .limit(self.batch_size)
            )
            with self.engine.connect() as connection:
                return [pg_relayed_entry(row) for row in connection.execute(query).mappings()]
        query = sa.select(*COLUMNS).where(condition).order_by(_log.c.id).limit(self.batch_size)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            return [
                relayed_entry(row, self._model(connection, row["content_type"])) for row in rows
            ]

    def record(self, ids: Sequence[str], position: int | None = None) -> SafeBound:
        """List ``ids`` as relayed and store ``position`` (unchanged when null), then move the
        horizon up to the safe bound; all in one transaction. Returns the bound found.

        ``ids`` are ULIDs in their canonical text, as :meth:`read` gives them (whose order is
        the ids' order: they are compared as text)."""
        with self.engine.begin() as connection:
            # a write first: on SQLite it takes the write lock the bound relies on
            values: dict[str, Any] = {
                "updated_at": _now(),
                "relayed": relay_table.c.relayed + len(ids),
            }
            if position is not None:
                values["position"] = position
            connection.execute(
                relay_table.update().where(relay_table.c.name == self.name).values(**values)
            )
            bound = safe_bound(connection, self.margin)
            listed = set(ids)
            if bound.at is not None:
                self._advance(connection, ulid_floor(bound.at), listed)
            if self.horizon is not None:  # only what stays at or above the horizon is listed
                floor = self.horizon
                listed = {i for i in listed if i >= floor}
            if listed:
                connection.execute(
                    _member.insert(), [{"relay": self.name, "entry_id": i} for i in sorted(listed)]
                )
            connection.execute(
                relay_table.update()
                .where(relay_table.c.name == self.name)
                .values(note=bound.note, horizon=self.horizon)
            )
        if position is not None:
            self.position = position
        self.note = bound.note
        return bound

    def _advance(self, connection: Connection, cap: str, relayed: set[str]) -> None:
        """Move the horizon up to the first committed entry not relayed (neither listed nor in
        ``relayed``, the batch being recorded), at most to ``cap``."""
        first = None
        unrelayed = _unrelayed(self.name, self.horizon)
        if relayed:
            top = max(relayed)
            among = connection.execute(
                sa.select(sa.func.count()).where(unrelayed, _log.c.id <= top, _log.c.id < cap)
            ).scalar_one()
            if among == len(relayed):  # nothing else below the batch's top: look above it
                first = connection.execute(
                    sa.select(_log.c.id)
                    .where(unrelayed, _log.c.id > top, _log.c.id < cap)
                    .order_by(_log.c.id)
                    .limit(1)
                ).scalar()
                self._move(connection, first if first is not None else cap)
                return
        rows = connection.execute(
            sa.select(_log.c.id)
            .where(unrelayed, _log.c.id < cap)
            .order_by(_log.c.id)
            .limit(len(relayed) + 1)
        ).scalars()
        for entry_id in rows:  # at most len(relayed) of the rows are in it
            if entry_id not in relayed:
                first = entry_id
                break
        self._move(connection, first if first is not None else cap)

    def _move(self, connection: Connection, new: str) -> None:
        if self.horizon is not None and new <= self.horizon:
            return
        connection.execute(
            _member.delete().where(_member.c.relay == self.name, _member.c.entry_id < new)
        )
        self.horizon = new

    def recover(self, ids: Sequence[str], position: int | None) -> int:
        """Record entries found in the sink after the recorded position (sent by a relay that
        stopped before recording them) as relayed; returns how many were new to the record."""
        canonical = (ulid_text(bytes.fromhex(ulid_hex(i))) for i in ids)
        wanted = {i for i in canonical if self.horizon is None or i >= self.horizon}
        known: set[str] = set()
        if wanted:
            with self.engine.connect() as connection:
                for chunk in _chunks(sorted(wanted), 500):
                    known.update(
                        connection.execute(
                            sa.select(_member.c.entry_id).where(
                                _member.c.relay == self.name, _member.c.entry_id.in_(chunk)
                            )
                        ).scalars()
                    )
                    present = set(
                        connection.execute(
                            sa.select(_log.c.id).where(_log.c.id.in_(chunk))
                        ).scalars()
                    )
                    known.update(set(chunk) - present)  # not (or no longer) in audit_log
        new = sorted(wanted - known)
        self.record(new, position)
        return len(new)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def committed_entries(
    engine: Engine,
    *,
    name: str = DEFAULT_NAME,
    batch_size: int = BATCH_SIZE,
    follow: bool = False,
    poll: float = 1.0,
    margin: float = DEFAULT_MARGIN,
) -> Iterator[list[RelayedEntry]]:
    """Yield batches of committed entries not yet relayed under ``name``, in a safe order.

    A batch is recorded as relayed when the next one is asked for (or the loop ends normally):
    an exception or a ``break`` in the loop body leaves it unrecorded, to be yielded again by
    the next call. With ``follow``, waits ``poll`` seconds when nothing is pending instead of
    returning.
    """
    source = RelaySource(engine, name=name, batch_size=batch_size, margin=margin)
    source.start()
    while True:
        batch = source.read()
        if not batch:
            source.record([])
            if not follow:
                return
            time.sleep(poll)
            continue
        yield batch
        source.record([e.id for e in batch])
