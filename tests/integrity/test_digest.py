"""The canonical form of an entry: one digest whatever form the database hands each value in."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from ulid import ULID

from auditlog.integrity.digest import (
    FIELDS,
    PERSONAL,
    VERSIONS,
    _canonical,
    entry_digest,
    erased_entry_digest,
    field_digest,
    field_key,
    field_keys,
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


@pytest.mark.parametrize("version", VERSIONS)
def test_the_entry_digest_is_built_from_the_field_digests(version: int) -> None:
    keys = field_keys(KEY, version)
    parts = [f"auditlog-entry-v{version}\x00".encode()]
    parts += [_canonical(name, ROW[name]) for name in FIELDS if name not in PERSONAL]
    parts += [field_digest(keys[name], name, ROW[name], version) for name in PERSONAL]
    assert entry_digest(KEY, ROW, version) == hashlib.sha256(b"".join(parts)).hexdigest()
    assert [field_key(KEY, name, version) for name in PERSONAL] == list(keys.values())


@pytest.mark.parametrize("version", VERSIONS)
def test_a_field_key_gives_neither_the_entry_key_nor_another_field_key(version: int) -> None:
    keys = field_keys(KEY, version)
    assert len(set(keys.values())) == len(PERSONAL) and KEY not in keys.values()
    assert all(len(key) == 16 for key in keys.values())


def test_version_2_gives_a_null_field_one_digest_and_any_other_value_a_keyed_one() -> None:
    null = {field_digest(key, "extra", None, 2) for key in (KEY, bytes(16))}
    assert len(null) == 1  # a null holds nothing to hide
    assert field_digest(KEY, "extra", {}, 2) != field_digest(bytes(16), "extra", {}, 2)
    assert entry_digest(KEY, ROW, 2) != entry_digest(KEY, ROW, 1)


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


#: An entry and its digests under each version of the canonical form, computed once: seals
#: written by any release verify only while these hold.
KNOWN = {
    **ROW,
    "id": "01JDQ4Y5WQ8Y5M0V3XG3B0T9C7",
    "transaction_id": "01JDQ4Y5WQ0000000000000000",
    "extra": {"z": [1, 2.5, None], "ü": True},
    "tenant_id": "acme",
    "user_agent": "",
}


KNOWN_DIGESTS = {
    1: "ecad1b281f366ebdfd094822b270986016973ec52c42c2141edf6bd0b2567206",
    2: "5b3429afb10bd47719b132d3aa73ecfe785d2f673ec05d514413fc5c50ec0464",
}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_canonical_forms_do_not_change(version: int) -> None:
    assert entry_digest(KEY, KNOWN, version) == KNOWN_DIGESTS[version]
    keys = {name: k.hex() for name, k in field_keys(KEY, version).items() if name != "user_id"}
    own = field_key(KEY, "user_id", version)
    erased = {"user_id": field_digest(own, "user_id", "ada", version).hex()}
    assert (
        erased_entry_digest({**KNOWN, "user_id": None}, keys, erased, version)
        == (KNOWN_DIGESTS[version])
    )
