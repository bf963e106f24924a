"""The lifecycle tables: ``audit_prune`` (each removal of entries) and ``audit_prune_entry``.

- ``audit_prune``: one row per prune run (or import, below): when, which entries (``pruned_before`` and
  ``tenant_id``), how many entries it removed and how many of those were sealed. A run removes
  its entries in many short transactions and each adds its counts here in the same transaction,
  so the counts are exact even when a run is interrupted.
- ``audit_prune_entry``: the sealed entries a prune removed that ``pruned_before`` alone does not
  describe: those of a prune limited to one tenant (the seal keeps only an entry's id and
  digest, not its tenant), and the sealed entries an import did not bring. A prune of the whole
  log needs no rows here: every sealed entry older than its ``pruned_before`` is accounted for.

``verify`` reads both to tell pruned entries from removed ones (docs/lifecycle.md).
"""

from __future__ import annotations

import sqlalchemy as sa

from ..models import ULIDType, UTCDateTime, _exact, metadata

__all__ = ["PRUNE_KINDS", "prune_entry_table", "prune_table"]

#: Why entries left: a prune (retention), or an import that brought some of a seal's entries.
PRUNE_KINDS = ("prune", "import")

prune_table = sa.Table(
    "audit_prune",
    metadata,
    sa.Column("id", ULIDType(), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    #: entries older than this (to the millisecond) were removed; null for an import
    sa.Column("pruned_before", UTCDateTime(), nullable=True),
    #: only this tenant's entries (null: every tenant)
    sa.Column("tenant_id", _exact(64), nullable=True),
    sa.Column("entries", sa.BigInteger, nullable=False, default=0),
    sa.Column("sealed", sa.BigInteger, nullable=False, default=0),
    #: whole partitions dropped (PostgreSQL), comma-separated
    sa.Column("partitions", sa.Text, nullable=True),
    sa.Column("reason", sa.String(512), nullable=True),
)

prune_entry_table = sa.Table(
    "audit_prune_entry",
    metadata,
    sa.Column("entry_id", ULIDType(), primary_key=True),
    sa.Column("prune_id", ULIDType(), nullable=False),
)
