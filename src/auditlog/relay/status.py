"""Where a relay stands: its position, what is pending, how far behind it is."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..models import audit_log_table
from .tables import relay_entry_table, relay_table

__all__ = ["RelayStatus", "relay_status"]


@dataclasses.dataclass(frozen=True)
class RelayStatus:
    """A relay's record and backlog.

    ``pending``: committed entries not relayed yet; ``oldest_pending``: the time of the oldest
    of them; ``lag``: its age in seconds (0 when nothing is pending).
    """

    name: str
    horizon: str | None
    position: int | None
    relayed: int
    started_at: dt.datetime | None
    updated_at: dt.datetime | None
    note: str | None
    pending: int
    oldest_pending: dt.datetime | None
    lag: float

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("started_at", "updated_at", "oldest_pending"):
            if data[key] is not None:
                data[key] = data[key].isoformat().replace("+00:00", "Z")
        return data


def relay_status(engine: Engine, name: str) -> RelayStatus | None:
    """The status of relay ``name``, or null when it never ran."""
    log, member = audit_log_table, relay_entry_table
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("audit_relay"):
            return None
        row = connection.execute(relay_table.select().where(relay_table.c.name == name)).first()
        if row is None:
            return None
        listed = (
            sa.select(sa.literal(1))
            .where(member.c.relay == name, member.c.entry_id == log.c.id)
            .exists()
        )
        condition: Any = ~listed
        if row.horizon is not None:
            condition = sa.and_(log.c.id >= row.horizon, condition)
        pending = connection.execute(
            sa.select(sa.func.count()).select_from(log).where(condition)
        ).scalar_one()
        oldest = connection.execute(
            sa.select(log.c.timestamp).where(condition).order_by(log.c.id).limit(1)
        ).scalar()
    now = dt.datetime.now(dt.timezone.utc)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return RelayStatus(
        name=row.name,
        horizon=row.horizon,
        position=row.position,
        relayed=row.relayed,
        started_at=row.started_at,
        updated_at=row.updated_at,
        note=row.note,
        pending=pending,
        oldest_pending=oldest,
        lag=lag,
    )
