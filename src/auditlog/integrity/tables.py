"""The seal tables: ``audit_seal`` (the hash chain) and ``audit_seal_entry`` (who is in which seal).

- ``audit_seal``: one row per seal, numbered from 1. Its ``digest`` covers its number, its time,
  how many entries it holds, the digest of those entries and the previous seal's digest, so each
  seal fixes every seal before it: the newest digest (the *head*) fixes the whole log.
- ``audit_seal_entry``: one row per sealed entry, naming its seal. The entry's id is the primary
  key, so an entry belongs to at most one seal; a seal holds exactly the entries listed here,
  whatever their ids, so an entry that commits after newer ones were sealed is sealed later,
  never skipped. ``entry_key`` is 16 random bytes (hex) drawn for the entry when it is sealed:
  each value is hashed with it (``digest.py``), so a digest never lets anyone guess a value.
  ``digest`` is the entry's digest, kept to name the entry that changed.

``audit_erasure`` records each erasure (``erase.py``): when, what kind, which fields, how many
entries, why and by whom, never whose.

They are created with the other tables (``auditlog.create_tables``) and are part of
``auditlog.metadata``.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..models import ULIDType, UTCDateTime, metadata

__all__ = ["erasure_table", "seal_entry_table", "seal_table"]

#: A SHA-256 digest in hex.
_DIGEST = sa.String(64)

seal_table = sa.Table(
    "audit_seal",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sealed_at", UTCDateTime(), nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("entries_digest", _DIGEST, nullable=False),
    sa.Column("previous", _DIGEST, nullable=False),
    sa.Column("digest", _DIGEST, nullable=False),
)

seal_entry_table = sa.Table(
    "audit_seal_entry",
    metadata,
    sa.Column("entry_id", ULIDType(), primary_key=True),
    sa.Column("seal_seq", sa.Integer, nullable=False),
    sa.Column("entry_key", sa.String(32), nullable=True),
    sa.Column("digest", _DIGEST, nullable=False),
    #: after an erasure (``entry_key`` is then null): JSON ``{"keys": {field: hex},
    #: "digests": {field: hex}}``, the keys of the personal fields kept, the digests of those erased
    sa.Column("erased", sa.Text, nullable=True),
    sa.Index("ix_audit_seal_entry_seal", "seal_seq", "entry_id"),
)

erasure_table = sa.Table(
    "audit_erasure",
    metadata,
    sa.Column("id", ULIDType(), primary_key=True),
    sa.Column("erased_at", UTCDateTime(), nullable=False),
    #: "actor" (what was recorded about a user as actor) or "object" (an object's states)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("content_type", sa.Integer, nullable=True),
    #: the fields erased, comma-separated
    sa.Column("fields", sa.String(255), nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(512), nullable=True),
    sa.Column("erased_by", sa.String(255), nullable=True),
)
