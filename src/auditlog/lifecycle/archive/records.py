"""The archive's three file formats: JSON Lines, CSV and Parquet, one record stream in each.

An archive is a stream of records: a ``header``, the ``entry`` records in id order, the ``seal``
records, then a ``trailer`` that counts the records before it and holds a SHA-256 over them, so
that a truncated or edited file is detected. The fields of each kind are :data:`RECORDS`.

- JSON Lines: one JSON object a line, its kind under ``record``; the JSON-valued fields
  (:data:`JSON_FIELDS`) nested as JSON. The trailer's digest covers the bytes of every line
  before it.
- CSV: a header row of :data:`COLUMNS`, one row per record, ``record`` first. Null is ``\\N``
  (a text starting with a backslash gets one more), so that null and empty text stay apart;
  JSON-valued fields are JSON text.
- Parquet (``pip install "sqlalchemy-auditlog[parquet]"``): the same columns, integers as
  ``int64``, the rest as text (JSON-valued fields as JSON text), one row group per page read.

For CSV the trailer's digest covers each record's row as written (Python's ``csv`` module
writes the same cells the same way, so a reader recomputes it); for Parquet, each record's
*cells*: the record's kind and its own fields' texts (integers in decimal, null as null) as a
compact JSON array and a newline.
See docs/archives.md.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ...exceptions import AuditLogError
from ...integrity.digest import FIELDS
from ...ulids import ulid_text

__all__ = [
    "COLUMNS",
    "ENTRY",
    "FORMATS",
    "INT_FIELDS",
    "JSON_FIELDS",
    "NAME",
    "READS",
    "RECORDS",
    "VERSION",
    "ArchiveError",
    "canonical_json",
    "cell_text",
    "dumps",
    "escape",
    "iso_time",
    "loads",
    "pyarrow_module",
    "ulid_text",
    "unescape",
]

FORMATS = ("jsonl", "csv", "parquet")
#: The archive format's name and version, in the header; the versions this code reads (version
#: 1 lists every seal's members; version 2 omits them, as null, from a seal all of whose
#: members are archived entries: those entries name their seal).
NAME, VERSION = "auditlog-archive", 2
READS = (1, 2)
ENTRY: tuple[str, ...] = (*FIELDS, "seal", "entry_key", "digest", "erased")
RECORDS: dict[str, tuple[str, ...]] = {
    "header": (
        "format",
        "version",
        "exported_at",
        "dialect",
        "before",
        "tenant_id",
        "content_types",
    ),
    "entry": ENTRY,
    "seal": (
        "seq",
        "sealed_at",
        "entries",
        "entries_digest",
        "previous",
        "digest",
        "members",
        "pruned",
    ),
    "trailer": ("records", "entries", "seals", "sha256"),
}
COLUMNS: tuple[str, ...] = ("record", *dict.fromkeys(f for fs in RECORDS.values() for f in fs))
JSON_FIELDS = frozenset(
    {"content_types", "before_state", "after_state", "changed_fields", "extra", "members", "pruned"}
)
INT_FIELDS = frozenset({"version", "content_type", "seal", "seq", "entries", "records", "seals"})
canonical_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ArchiveError(AuditLogError, ValueError):
    """A file that is not an archive, or one that cannot be imported (the message says why)."""


try:
    import orjson

    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    def loads(raw: bytes | str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:  # integers beyond 64 bits: the standard library reads them
            return json.loads(raw)

except ImportError:  # pragma: no cover - the fast extra is missing
    _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def dumps(value: Any) -> str:
        return _encode(value)

    def loads(raw: bytes | str) -> Any:
        return json.loads(raw)


def cell_text(name: str, value: Any) -> str | None:
    """A field as CSV or Parquet text: JSON-valued ones as JSON, integers in decimal."""
    if value is None:
        return None
    if name in JSON_FIELDS and not isinstance(value, str):
        return dumps(value)
    return str(value)


def escape(text: str | None) -> str:
    if text is None:
        return "\\N"
    return "\\" + text if text.startswith("\\") else text


def unescape(text: str) -> str | None:
    if text == "\\N":
        return None
    return text[1:] if text.startswith("\\") else text


def pyarrow_module() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped]
        import pyarrow.parquet  # type: ignore[import-untyped]
    except ImportError:
        raise ArchiveError(
            'the Parquet format needs pyarrow: pip install "sqlalchemy-auditlog[parquet]"'
        ) from None
    return pyarrow


def iso_time(moment: dt.datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
