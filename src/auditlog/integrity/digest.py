"""Digests of entries and seals: SHA-256 over a canonical form of what the database stores.

An entry's digest covers the canonical values of its fields, except that the fields that can
hold a person's data (:data:`PERSONAL`: the actor, the address, the agent, the object's key, its
states, extra) enter it through digests of their own, each keyed: the entry's random key gives
one key per field, ``field_key = sha256(key, name)``, and the field's digest is
``sha256(field_key, name, canonical value)``. The key makes a digest useless for guessing a
value (a phone number has few possible values; with 128 random bits in front, a digest says
nothing about it). Keys per field are what let such a field be erased later while the rest of
the entry stays provable: the erased field's digest is kept and the entry's key dropped, the
other fields keep their own keys, and nothing stored lets anyone test a guess of the erased
value.

The canonical forms (version 1): text as UTF-8, integers in decimal, the time as UTC ISO 8601
with microseconds, JSON documents with sorted keys and no spaces (standard library encoder, so
the form never depends on optional packages); each value is preceded by its length, null by a
length no value has.

A seal's digest covers its number, its time, its entry count, the digest of its entries (their
digests in id order) and the previous seal's digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ..ulids import ulid_int

__all__ = [
    "FIELDS",
    "GENESIS",
    "PERSONAL",
    "digest_bytes",
    "entries_digest",
    "entries_hash",
    "entry_digest",
    "erased_entry_digest",
    "erasure_record",
    "field_digest",
    "field_key",
    "from_hex",
    "row_columns",
    "seal_digest",
]

#: The fields of an entry a digest covers, in order (version 1: every column of ``audit_log``).
FIELDS: tuple[str, ...] = (
    "id",
    "tenant_id",
    "user_id",
    "action_type",
    "timestamp",
    "ip_address",
    "user_agent",
    "object_id",
    "content_type",
    "before_state",
    "after_state",
    "changed_fields",
    "transaction_id",
    "extra",
    "renamed_to",
)
#: The fields that may hold a person's data: each has a digest of its own.
PERSONAL: tuple[str, ...] = (
    "user_id",
    "ip_address",
    "user_agent",
    "object_id",
    "before_state",
    "after_state",
    "extra",
    "renamed_to",
)
_OTHERS = tuple(name for name in FIELDS if name not in PERSONAL)
#: The ``previous`` of the first seal.
GENESIS = "0" * 64
_NULL = b"\xff\xff\xff\xff"
_ENTRY = b"auditlog-entry-v1\x00"
_FIELD_KEY = b"auditlog-field-key-v1\x00"
_ENTRIES = b"auditlog-entries-v1\x00"
_NAMES = {name: name.encode() + b"\x00" for name in FIELDS}
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _text(value: Any) -> bytes:
    return str(value).encode("utf-8", "surrogatepass")


def _document(value: Any) -> bytes:
    return _json(value).encode("utf-8", "surrogatepass")


def _time(value: dt.datetime) -> bytes:
    if value.tzinfo is None:  # naive UTC, as MariaDB and SQLite hold it
        value = value.replace(tzinfo=dt.timezone.utc)
    elif value.utcoffset():
        value = value.astimezone(dt.timezone.utc)
    return value.isoformat(timespec="microseconds").encode()


def _ulid(value: Any) -> bytes:
    """A ULID as its 32 lowercase hex digits, from the stored ``uuid`` or hex, or its text."""
    text = str(value)
    if len(text) == 26:
        return f"{ulid_int(text):032x}".encode()
    return text.replace("-", "").lower().encode()


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    **dict.fromkeys(FIELDS, _text),
    "id": _ulid,
    "transaction_id": _ulid,
    "timestamp": _time,
    "before_state": _document,
    "after_state": _document,
    "changed_fields": _document,
    "extra": _document,
}


def _canonical(name: str, value: Any) -> bytes:
    """The value's canonical bytes, preceded by their length."""
    if value is None:
        return _NULL
    raw = _ENCODERS[name](value)
    return len(raw).to_bytes(4, "big") + raw


def field_key(key: bytes, name: str) -> bytes:
    """The key of one personal field, from the entry's key (one-way: a field's key never gives
    the entry's, nor another field's)."""
    return hashlib.sha256(_FIELD_KEY + key + _NAMES[name]).digest()[:16]


def field_digest(key: bytes, name: str, value: Any) -> bytes:
    """The digest of one personal field's stored value, under that field's key."""
    return hashlib.sha256(key + _NAMES[name] + _canonical(name, value)).digest()


_PLAN_OTHERS = tuple((name, _ENCODERS[name]) for name in _OTHERS)
_PLAN_PERSONAL = tuple((name, _NAMES[name], _ENCODERS[name]) for name in PERSONAL)


def entry_digest(key: bytes, row: Mapping[str, Any] | Any) -> str:
    """The digest (hex) of one entry as stored, from its key and its row (what
    :func:`field_key`, :func:`field_digest` and :func:`_canonical` give, unrolled: this runs
    once per entry)."""
    sha256 = hashlib.sha256
    parts = [_ENTRY]
    for name, encode in _PLAN_OTHERS:
        value = row[name]
        if value is None:
            parts.append(_NULL)
        else:
            raw = encode(value)
            parts.append(len(raw).to_bytes(4, "big") + raw)
    for name, label, encode in _PLAN_PERSONAL:
        value = row[name]
        own = sha256(_FIELD_KEY + key + label).digest()[:16]
        if value is None:
            parts.append(sha256(own + label + _NULL).digest())
        else:
            raw = encode(value)
            parts.append(sha256(own + label + len(raw).to_bytes(4, "big") + raw).digest())
    return sha256(b"".join(parts)).hexdigest()


def erased_entry_digest(
    row: Mapping[str, Any] | Any, keys: Mapping[str, str], digests: Mapping[str, str]
) -> str:
    """The digest (hex) of an entry some of whose personal fields were erased: ``keys`` are the
    field keys kept (hex), ``digests`` the erased fields' digests (hex)."""
    parts = [_ENTRY]
    parts.extend(_canonical(name, row[name]) for name in _OTHERS)
    for name in PERSONAL:
        if name in digests:
            parts.append(bytes.fromhex(digests[name]))
        else:
            parts.append(field_digest(bytes.fromhex(keys[name]), name, row[name]))
    return hashlib.sha256(b"".join(parts)).hexdigest()


def entries_hash() -> hashlib._Hash:
    """A SHA-256 to feed a seal's entry digests (bytes) in id order: its hex digest is then
    :func:`entries_digest`'s."""
    return hashlib.sha256(_ENTRIES)


def entries_digest(digests: Iterable[str]) -> str:
    """The digest (hex) of a seal's entries: their digests in id order."""
    h = hashlib.sha256(_ENTRIES)
    for digest in digests:
        h.update(digest_bytes(digest))
    return h.hexdigest()


def digest_bytes(text: Any) -> bytes:
    """A member's sealed digest as the bytes its seal's entries digest covers; a digest that
    is not 64 hex digits (an edited record) as its text, which no seal's entries digest matches."""
    raw = from_hex(text, 32)
    return raw if raw is not None else b"\x00not-a-digest\x00" + str(text).encode(errors="replace")


def from_hex(text: Any, size: int) -> bytes | None:
    """``text`` as ``size`` bytes when it is ``2 * size`` hex digits, else None."""
    if not isinstance(text, str) or len(text) != 2 * size:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == size else None  # fromhex skips spaces


def erasure_record(text: Any) -> tuple[dict[str, str], dict[str, str]] | None:
    """What an erasure kept of a sealed entry (field keys, erased fields' digests), or None
    when the record is not one an erasure writes."""
    try:
        held = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(held, dict):
        return None
    keys, digests = held.get("keys"), held.get("digests")
    if not isinstance(keys, dict) or not isinstance(digests, dict):
        return None
    if set(keys) & set(digests) or set(keys) | set(digests) != set(PERSONAL):
        return None
    if any(from_hex(v, 16) is None for v in keys.values()):
        return None
    if any(from_hex(v, 32) is None for v in digests.values()):
        return None
    return keys, digests


def seal_digest(
    seq: int, sealed_at: dt.datetime, entries: int, entries_hex: str, previous: str
) -> str:
    """The digest (hex) of a seal, which fixes every seal before it through ``previous``."""
    body = "\x00".join(
        (
            "auditlog-seal-v1",
            str(seq),
            _time(sealed_at).decode(),
            str(entries),
            entries_hex,
            previous,
        )
    )
    return hashlib.sha256(body.encode()).hexdigest()


def row_columns(table: Any, prefix: str = "") -> list[Any]:
    """The columns of ``audit_log`` a digest reads, labelled ``prefix + name``; the ids as
    stored (no ULID decoding)."""
    return [
        (
            sa.type_coerce(table.c[name], sa.String)
            if name in ("id", "transaction_id")
            else table.c[name]
        ).label(prefix + name)
        for name in FIELDS
    ]
