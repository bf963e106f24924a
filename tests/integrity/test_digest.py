"""The canonical form of an entry: one digest whatever form the database hands each value in."""

from __future__ import annotations

import datetime as dt
import hashlib

from ulid import ULID

from auditlog.integrity.digest import (
    FIELDS,
    PERSONAL,
    _canonical,
    entry_digest,
    field_digest,
    field_key,
)

ID = ULID()
AT = dt.datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
ROW = {
    **dict.fromkeys(FIELDS),
    "id": str(ID),
    "action_type": "update",
    "timestamp": AT,
    "user_id": "ada",
    "object_id": "7",
    "content_type": 3,
    "before_state": {"b": 1, "a": "é"},
    "after_state": {"a": "é", "b": 2},
}
KEY = bytes(range(16))


def test_the_entry_digest_is_built_from_the_field_digests() -> None:
    parts = [b"auditlog-entry-v1\x00"]
    parts += [_canonical(name, ROW[name]) for name in FIELDS if name not in PERSONAL]
    parts += [field_digest(field_key(KEY, name), name, ROW[name]) for name in PERSONAL]
    assert entry_digest(KEY, ROW) == hashlib.sha256(b"".join(parts)).hexdigest()


def test_a_field_key_gives_neither_the_entry_key_nor_another_field_key() -> None:
    keys = {name: field_key(KEY, name) for name in PERSONAL}
    assert len(set(keys.values())) == len(PERSONAL) and KEY not in keys.values()
    assert all(len(key) == 16 for key in keys.values())


def test_each_stored_form_of_a_value_gives_the_same_digest() -> None:
    expected = entry_digest(KEY, ROW)
    as_hex = {**ROW, "id": ID.hex}  # CHAR(32) on MariaDB and SQLite
    as_uuid = {**ROW, "id": str(ID.to_uuid())}  # uuid on PostgreSQL
    naive = {**ROW, "timestamp": AT.replace(tzinfo=None)}  # naive UTC on MariaDB and SQLite
    other_zone = {**ROW, "timestamp": AT.astimezone(dt.timezone(dt.timedelta(hours=5)))}
    reordered = {**ROW, "before_state": {"a": "é", "b": 1}}
    for row in (as_hex, as_uuid, naive, other_zone, reordered):
        assert entry_digest(KEY, row) == expected


def test_any_other_value_or_key_gives_another_digest() -> None:
    expected = entry_digest(KEY, ROW)
    assert entry_digest(bytes(16), ROW) != expected
    for name, value in [("user_id", "adb"), ("object_id", None), ("content_type", 4)]:
        assert entry_digest(KEY, {**ROW, name: value}) != expected
    # a value moved from one field to the next is another entry too
    assert entry_digest(KEY, {**ROW, "user_id": None, "ip_address": "ada"}) != expected
