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

The canonical forms: text as UTF-8, integers in decimal, the time as UTC ISO 8601 with
microseconds, JSON documents with sorted keys and no spaces (standard library encoder, so the
form never depends on optional packages); each value is preceded by its length, null by a
length no value has.

Versions (:data:`VERSIONS`): in version 1, each field key is a SHA-256 of the entry's key and the
field's name, and every personal field has a keyed digest; in version 2 (:data:`VERSION`, what
new seals use), the eight field keys are one SHAKE-256 of the entry's key cut in sixteen-byte
pieces, and a null personal field has one fixed digest. Both give one digest per entry from the
same canonical values.

A seal's digest covers its version, its number, its time, its entry count, the digest of its
entries (their digests in id order) and the previous seal's digest; :func:`seal_version` finds
a stored seal's version by the one its digest matches.
"""

from __future__ import annotations

import binascii
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
    "VERSION",
    "VERSIONS",
    "Cells",
    "canonical_json",
    "cell",
    "cells_digest",
    "cells_digest_bytes",
    "digest_bytes",
    "entries_digest",
    "entries_hash",
    "entry_cells",
    "entry_digest",
    "erased_cells_digest",
    "erased_entry_digest",
    "erasure_record",
    "field_digest",
    "field_key",
    "field_keys",
    "from_hex",
    "row_columns",
    "seal_digest",
    "seal_version",
    "sealed_version",
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
#: The version of the digests a new seal is made under; every version a seal may be under.
VERSION = 2
VERSIONS = (2, 1)
_NULL = b"\xff\xff\xff\xff"
_ENTRY = b"auditlog-entry-v1\x00"
_ENTRY_V2 = b"auditlog-entry-v2\x00"
_FIELD_KEY = b"auditlog-field-key-v1\x00"
_FIELD_KEYS_V2 = b"auditlog-field-keys-v2\x00"
_KEYS_V2 = 16 * len(PERSONAL)
#: Version 2: the digest of a null personal field (no key: a null holds nothing to hide).
_NULL_PART = hashlib.sha256(b"auditlog-null-field-v2").digest()
_ENTRIES = b"auditlog-entries-v1\x00"
_NAMES = {name: name.encode() + b"\x00" for name in FIELDS}
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _fast_json() -> Callable[[Any], str]:
    """``_json`` without the encoder object it makes on every call: the standard library's C
    encoder, made once (the same output: it is what ``_json`` runs). The values come from the
    database's JSON, so they never refer to themselves (no circular check)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython builds have it
        return _json
    encode = make(None, _json, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    join = "".join
    return lambda value: join(encode(value, 0))


canonical_json = _fast_json()


def _text(value: Any) -> bytes:
    return str(value).encode("utf-8", "surrogatepass")


def _document(value: Any) -> bytes:
    return canonical_json(value).encode("utf-8", "surrogatepass")


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


def field_key(key: bytes, name: str, version: int = 1) -> bytes:
    """The key of one personal field, from the entry's key (one-way: a field's key never gives
    the entry's, nor another field's)."""
    if version == 1:
        return hashlib.sha256(_FIELD_KEY + key + _NAMES[name]).digest()[:16]
    return field_keys(key, version)[name]


def field_keys(key: bytes, version: int = VERSION) -> dict[str, bytes]:
    """The keys of every personal field, from the entry's key."""
    if version == 1:
        return {name: field_key(key, name, 1) for name in PERSONAL}
    stream = hashlib.shake_256(_FIELD_KEYS_V2 + key).digest(16 * len(PERSONAL))
    return {name: stream[16 * i : 16 * i + 16] for i, name in enumerate(PERSONAL)}


def field_digest(key: bytes, name: str, value: Any, version: int = 1) -> bytes:
    """The digest of one personal field's stored value, under that field's key (version 2: null
    has one digest, whatever the key: a null holds nothing to hide)."""
    if value is None and version != 1:
        return _NULL_PART
    return hashlib.sha256(key + _NAMES[name] + _canonical(name, value)).digest()


#: An entry as digest input: each field's canonical bytes (None for null), in FIELDS order.
Cells = tuple[bytes | None, ...]
_AT = {name: i for i, name in enumerate(FIELDS)}
_OTHERS_AT = tuple(_AT[name] for name in _OTHERS)
_PERSONAL_AT = tuple((_AT[name], _NAMES[name]) for name in PERSONAL)
_PERSONAL_V2 = tuple((at, label, 16 * i) for i, (at, label) in enumerate(_PERSONAL_AT))
_ENCODING = tuple(_ENCODERS[name] for name in FIELDS)


def entry_cells(row: Mapping[str, Any] | Any) -> Cells:
    """An entry's values (a row or mapping, by field name) as their canonical bytes."""
    return tuple(
        None if (value := row[name]) is None else encode(value)
        for name, encode in zip(FIELDS, _ENCODING, strict=True)
    )


def cell(cells: Cells, name: str) -> bytes | None:
    """One field's canonical bytes."""
    return cells[_AT[name]]


def entry_digest(key: bytes, row: Mapping[str, Any] | Any, version: int = VERSION) -> str:
    """The digest (hex) of one entry as stored, from its key and its row."""
    return cells_digest(key, entry_cells(row), version)


def cells_digest(key: bytes, cells: Cells, version: int = VERSION) -> str:
    """The digest (hex) of one entry from its key and its :func:`entry_cells`."""
    return cells_digest_bytes(key, cells, version).hex()


def cells_digest_bytes(key: bytes, cells: Cells, version: int = VERSION) -> bytes:
    """:func:`cells_digest` as bytes (what :func:`field_keys`, :func:`field_digest` and
    :func:`_canonical` give, unrolled: this runs once per entry)."""
    sha256 = hashlib.sha256
    if version == 1:
        parts = [_ENTRY]
        for at in _OTHERS_AT:
            raw = cells[at]
            parts.append(_NULL if raw is None else len(raw).to_bytes(4, "big") + raw)
        for at, label in _PERSONAL_AT:
            raw = cells[at]
            own = sha256(_FIELD_KEY + key + label).digest()[:16]
            value = _NULL if raw is None else len(raw).to_bytes(4, "big") + raw
            parts.append(sha256(own + label + value).digest())
        return sha256(b"".join(parts)).digest()
    parts = [_ENTRY_V2]
    for at in _OTHERS_AT:
        raw = cells[at]
        parts.append(_NULL if raw is None else len(raw).to_bytes(4, "big") + raw)
    keys = hashlib.shake_256(_FIELD_KEYS_V2 + key).digest(_KEYS_V2)
    for at, label, start in _PERSONAL_V2:
        raw = cells[at]
        if raw is None:
            parts.append(_NULL_PART)
        else:
            own = keys[start : start + 16]
            parts.append(sha256(own + label + len(raw).to_bytes(4, "big") + raw).digest())
    return sha256(b"".join(parts)).digest()


def erased_entry_digest(
    row: Mapping[str, Any] | Any,
    keys: Mapping[str, str],
    digests: Mapping[str, str],
    version: int = VERSION,
) -> str:
    """The digest (hex) of an entry some of whose personal fields were erased: ``keys`` are the
    field keys kept (hex), ``digests`` the erased fields' digests (hex)."""
    return erased_cells_digest(entry_cells(row), keys, digests, version)


def erased_cells_digest(
    cells: Cells, keys: Mapping[str, str], digests: Mapping[str, str], version: int = VERSION
) -> str:
    """:func:`erased_entry_digest` from the entry's :func:`entry_cells`."""
    parts = [_ENTRY if version == 1 else _ENTRY_V2]
    for at in _OTHERS_AT:
        raw = cells[at]
        parts.append(_NULL if raw is None else len(raw).to_bytes(4, "big") + raw)
    for name in PERSONAL:
        if name in digests:
            parts.append(bytes.fromhex(digests[name]))
            continue
        raw = cells[_AT[name]]
        if raw is None and version != 1:
            parts.append(_NULL_PART)
            continue
        value = _NULL if raw is None else len(raw).to_bytes(4, "big") + raw
        label = _NAMES[name]
        parts.append(hashlib.sha256(bytes.fromhex(keys[name]) + label + value).digest())
    return hashlib.sha256(b"".join(parts)).hexdigest()


#: The versions to try, a given one first.
_ORDERS: dict[int | None, tuple[int, ...]] = {
    None: VERSIONS,
    **{v: (v, *(w for w in VERSIONS if w != v)) for v in VERSIONS},
}


def sealed_version(
    cells: Cells,
    sealed: bytes | None,
    *,
    key: bytes | None = None,
    erasure: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
    first: int | None = None,
) -> int | None:
    """The version under which an entry's cells give its ``sealed`` digest, from its key or
    what an erasure kept of it (field keys, erased fields' digests), ``first`` tried first;
    None when none does. (The digest is fixed by its seal and the chain: a match under any
    version proves the entry.)"""
    if sealed is None or (key is None and erasure is None):
        return None
    for version in _ORDERS[first]:
        if key is not None:
            if cells_digest_bytes(key, cells, version) == sealed:
                return version
        elif erasure is not None and erased_cells_digest(cells, *erasure, version) == sealed.hex():
            return version
    return None


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
    """``text`` (str, or its ASCII bytes) as ``size`` bytes when it is ``2 * size`` hex
    digits, else None."""
    if not isinstance(text, (str, bytes)) or len(text) != 2 * size:
        return None
    try:
        return binascii.unhexlify(text)
    except ValueError:  # binascii.Error, or not ASCII
        return None


def erasure_record(text: Any) -> tuple[dict[str, str], dict[str, str]] | None:
    """What an erasure kept of a sealed entry (field keys, erased fields' digests), or None
    when the record is not one an erasure writes."""
    try:
        held = json.loads(text) if isinstance(text, (str, bytes)) else None
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
    seq: int,
    sealed_at: dt.datetime,
    entries: int,
    entries_hex: str,
    previous: str,
    version: int = VERSION,
) -> str:
    """The digest (hex) of a seal, which fixes every seal before it through ``previous``; its
    version (how its entries' digests are made) is part of it."""
    body = "\x00".join(
        (
            f"auditlog-seal-v{version}",
            str(seq),
            _time(sealed_at).decode(),
            str(entries),
            entries_hex,
            previous,
        )
    )
    return hashlib.sha256(body.encode()).hexdigest()


def seal_version(
    seq: int, sealed_at: dt.datetime, entries: int, entries_hex: str, previous: str, digest: str
) -> int | None:
    """The version a seal was made under: the one whose seal digest its fields give; None when
    none does (the seal was changed)."""
    for version in VERSIONS:
        if seal_digest(seq, sealed_at, entries, entries_hex, previous, version) == digest:
            return version
    return None


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
