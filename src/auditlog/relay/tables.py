"""The relay's position, kept in the database beside the entries it relays.

- ``audit_relay``: one row per relay (by name). ``horizon`` is a ULID: every committed entry
  whose id is below it has been relayed, and no entry below it can still commit (the safe
  bound of ``horizon.py``). ``position`` is the sink's position after the last batch it
  acknowledged (a JetStream stream sequence), with counters and the last round's notes.
- ``audit_relay_entry``: the entries at or above the horizon already relayed, by relay. An
  entry that commits after newer ones were relayed is not listed, so it is relayed next round,
  never skipped. Rows below the horizon are deleted as it advances.

Both are part of ``auditlog.metadata`` and created by ``auditlog.create_tables``.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..models import ULIDType, UTCDateTime, metadata

__all__ = ["relay_entry_table", "relay_table"]

relay_table = sa.Table(
    "audit_relay",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    #: every committed entry below this id has been relayed; null: none yet
    sa.Column("horizon", ULIDType(), nullable=True),
    #: the sink's position after the last acknowledged batch (a stream sequence), or null
    sa.Column("position", sa.BigInteger, nullable=True),
    sa.Column("relayed", sa.BigInteger, nullable=False, default=0),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=True),
    #: why the horizon did not advance in the last round (missing privileges), or null
    sa.Column("note", sa.String(512), nullable=True),
)

relay_entry_table = sa.Table(
    "audit_relay_entry",
    metadata,
    sa.Column("relay", sa.String(64), primary_key=True),
    sa.Column("entry_id", ULIDType(), primary_key=True),
)
