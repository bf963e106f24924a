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

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any, cast

from ..exceptions import AuditLogError
from ..integrity.digest import FIELDS

__all__ = [
    "COLUMNS",
    "ENTRY",
    "FORMATS",
    "ArchiveError",
    "ArchiveReader",
    "ArchiveWriter",
    "open_writer",
    "ulid_text",
]

FORMATS = ("jsonl", "csv", "parquet")
#: The archive format's name and version, in the header.
NAME, VERSION = "auditlog-archive", 1
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
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Crockford base 32 of every 10 bits: two characters.
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]
_canonical = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ArchiveError(AuditLogError, ValueError):
    """A file that is not an archive, or one that cannot be imported (the message says why)."""


def ulid_text(raw: bytes, _pairs: list[str] = _PAIRS, _int: Any = int.from_bytes) -> str:
    """The 26-character ULID of 16 bytes: 13 lookups of 10 bits each (this runs per entry)."""
    n: int = _int(raw, "big")
    t = _pairs
    return (
        t[n >> 120] + t[(n >> 110) & 1023] + t[(n >> 100) & 1023] + t[(n >> 90) & 1023]
        + t[(n >> 80) & 1023] + t[(n >> 70) & 1023] + t[(n >> 60) & 1023]
        + t[(n >> 50) & 1023] + t[(n >> 40) & 1023] + t[(n >> 30) & 1023]
        + t[(n >> 20) & 1023] + t[(n >> 10) & 1023] + t[n & 1023]
    )  # fmt: skip


try:
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    def _loads(raw: bytes | str) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:  # integers beyond 64 bits: the standard library reads them
            return json.loads(raw)

except ImportError:  # pragma: no cover - the fast extra is missing
    _encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def _dumps(value: Any) -> str:
        return _encode(value)

    def _loads(raw: bytes | str) -> Any:
        return json.loads(raw)


def _cell(name: str, value: Any) -> str | None:
    """A field as CSV or Parquet text: JSON-valued ones as JSON, integers in decimal."""
    if value is None:
        return None
    if name in JSON_FIELDS and not isinstance(value, str):
        return _dumps(value)
    return str(value)


class ArchiveWriter:
    """Writes records in one format and counts them; :meth:`close` writes the trailer."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.records = self.entries_written = self.seals = 0

    def record(self, kind: str, values: dict[str, Any]) -> None:
        self._write(kind, [values.get(name) for name in RECORDS[kind]])
        self.records += 1
        self.seals += kind == "seal"

    def entries(self, rows: Sequence[Sequence[Any]], *, ids_as_bytes: bool = False) -> None:
        """Entry records, each its :data:`ENTRY` values (JSON-valued ones as JSON text; the
        ids as their 16 bytes when ``ids_as_bytes``)."""
        if ids_as_bytes and not isinstance(self, _JsonLines):
            rows = [_ids_as_text(row) for row in rows]
            ids_as_bytes = False
        self._entries(rows, ids_as_bytes)
        self.records += len(rows)
        self.entries_written += len(rows)

    def close(self) -> None:
        trailer = [self.records, self.entries_written, self.seals, self.sha.hexdigest()]
        self._write("trailer", trailer, hashed=False)
        self._finish()

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        raise NotImplementedError

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        for row in rows:
            self._write("entry", list(row))

    def _finish(self) -> None:
        self.out.flush()


def _line_function(ids_as_bytes: bool = False) -> Any:
    """``line(row) -> str``: one entry record's JSON line, as one f-string (this runs per entry):
    texts escaped, integers and JSON text as they are, ids and times (made here) quoted; with
    ``ids_as_bytes``, the ids given as their 16 bytes."""
    parts = ['f"""{{"record":"entry"']
    for i, name in enumerate(ENTRY):
        value = f"r[{i}]"
        ulid = f"u({value})" if ids_as_bytes else value
        if name == "id":
            shown = f'"{{{ulid}}}"'
        elif name == "timestamp":
            shown = f'"{{{value}}}"'
        elif name == "transaction_id":
            shown = f"""{{'null' if {value} is None else '"' + {ulid} + '"'}}"""
        elif name in JSON_FIELDS:
            shown = f"{{'null' if {value} is None else _one_line({value})}}"
        elif name in INT_FIELDS:
            shown = f"{{'null' if {value} is None else {value}}}"
        else:
            shown = f"{{'null' if {value} is None else q({value})}}"
        parts.append(f',"{name}":{shown}')
    parts.append('}}\\n"""')
    source = "def line(r, q=encode_basestring, u=ulid_text):\n    return " + "".join(parts) + "\n"
    namespace: dict[str, Any] = {
        "encode_basestring": encode_basestring,
        "_one_line": _one_line,
        "ulid_text": ulid_text,
    }
    exec(source, namespace)
    return namespace["line"]


def _one_line(text: str) -> str:
    """JSON text on one line (a line break is whitespace between JSON tokens)."""
    return text.replace("\n", " ").replace("\r", " ") if "\n" in text or "\r" in text else text


class _JsonLines(ArchiveWriter):
    _line = staticmethod(_line_function())
    _line_of_bytes = staticmethod(_line_function(ids_as_bytes=True))

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        record = {"record": kind, **dict(zip(RECORDS[kind], values, strict=True))}
        line = (_dumps(record) + "\n").encode()
        if hashed:
            self.sha.update(line)
        self.out.write(line)

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        line = self._line_of_bytes if ids_as_bytes else self._line
        data = "".join([line(row) for row in rows]).encode("utf-8", "surrogatepass")
        self.sha.update(data)
        self.out.write(data)


_ID, _TXN = ENTRY.index("id"), ENTRY.index("transaction_id")


def _ids_as_text(row: Sequence[Any]) -> list[Any]:
    cells = list(row)
    cells[_ID] = ulid_text(cells[_ID])
    if cells[_TXN] is not None:
        cells[_TXN] = ulid_text(cells[_TXN])
    return cells


def _escape(text: str | None) -> str:
    if text is None:
        return "\\N"
    return "\\" + text if text.startswith("\\") else text


def _unescape(text: str) -> str | None:
    if text == "\\N":
        return None
    return text[1:] if text.startswith("\\") else text


class _Csv(ArchiveWriter):
    """Rows made a page at a time in memory, hashed as written, then written."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(out)
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        csv.writer(self.text).writerow(COLUMNS)
        self.places = {kind: [COLUMNS.index(n) for n in names] for kind, names in RECORDS.items()}

    def _rows(self, rows: list[list[str]], hashed: bool = True) -> None:
        page = io.StringIO(newline="")
        csv.writer(page).writerows(rows)
        text = page.getvalue()
        if hashed:
            self.sha.update(text.encode("utf-8", "surrogatepass"))
        self.text.write(text)

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        row = ["\\N"] * len(COLUMNS)
        row[0] = kind
        for place, name, value in zip(self.places[kind], RECORDS[kind], values, strict=True):
            row[place] = _escape(_cell(name, value))
        self._rows([row], hashed)

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        places = self.places["entry"]
        blank = ["\\N"] * len(COLUMNS)
        blank[0] = "entry"
        out = []
        for row in rows:
            line = blank.copy()
            for place, value in zip(places, row, strict=True):
                if value is not None:
                    text = value if type(value) is str else str(value)
                    line[place] = "\\" + text if text.startswith("\\") else text
            out.append(line)
        self._rows(out)

    def _finish(self) -> None:
        self.text.flush()
        self.text.detach()
        self.out.flush()


def _pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped]
        import pyarrow.parquet  # type: ignore[import-untyped]
    except ImportError:
        raise ArchiveError(
            'the Parquet format needs pyarrow: pip install "sqlalchemy-auditlog[parquet]"'
        ) from None
    return pyarrow


class _Parquet(ArchiveWriter):
    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(out)
        pa = self.pa = _pyarrow()
        self.schema = pa.schema(
            [(n, pa.int64() if n in INT_FIELDS else pa.string()) for n in COLUMNS]
        )
        self.writer = pa.parquet.ParquetWriter(out, self.schema, compression="zstd")
        self.kinds = {kind: ["record", *names] for kind, names in RECORDS.items()}

    def _table(self, kind: str, rows: list[list[Any]]) -> None:
        names = self.kinds[kind]
        columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
        for name in INT_FIELDS.intersection(columns):  # PostgreSQL's COPY gives them as text
            columns[name] = [None if v is None else int(v) for v in columns[name]]
        arrays = [
            self.pa.array(columns[name], type=field.type)
            if name in columns
            else self.pa.nulls(len(rows), type=field.type)
            for name, field in zip(COLUMNS, self.schema, strict=False)
        ]
        self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        names = RECORDS[kind]
        cells = [
            _cell(n, v) if n not in INT_FIELDS else v for n, v in zip(names, values, strict=False)
        ]
        if hashed:
            texts = [None if c is None else str(c) for c in cells]
            self.sha.update((_canonical([kind, *texts]) + "\n").encode("utf-8", "surrogatepass"))
        self._table(kind, [[kind, *cells]])

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        if not rows:
            return
        self.sha.update(
            "".join(
                _canonical(["entry", *(None if v is None else str(v) for v in row)]) + "\n"
                for row in rows
            ).encode("utf-8", "surrogatepass")
        )
        self._table("entry", [["entry", *row] for row in rows])

    def _finish(self) -> None:
        self.writer.close()
        self.out.flush()


def open_writer(form: str, out: IO[bytes]) -> ArchiveWriter:
    """A writer of ``form`` (jsonl, csv or parquet) on a binary stream."""
    if form == "jsonl":
        return _JsonLines(out)
    if form == "csv":
        return _Csv(out)
    if form == "parquet":
        return _Parquet(out)
    raise ArchiveError(f"unknown archive format {form!r} (jsonl, csv or parquet)")


_FIELD_LIMIT = 2**31 - 1


class ArchiveReader:
    """The records of an archive file as dicts of Python values (times as ISO text), its format
    found from its first bytes. After the trailer: ``trailer``, and ``computed`` (the digest and
    the number of the records read before it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self.path.open("rb") as file:
                start = file.read(8)
        except OSError as exc:
            raise ArchiveError(f"cannot read {str(self.path)!r}: {exc.strerror}") from None
        if start.startswith(b"PAR1"):
            self.format = "parquet"
        elif start.startswith(b"{"):
            self.format = "jsonl"
        elif start.startswith(b"record,"):
            self.format = "csv"
        else:
            raise ArchiveError(f"{str(self.path)!r} is not an auditlog archive")
        self.trailer: dict[str, Any] | None = None
        self.computed: tuple[str, int] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.trailer = self.computed = None
        sha, count = hashlib.sha256(), 0
        records = {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}[self.format]
        try:
            for record, canonical in records():
                if self.trailer is not None:
                    raise ArchiveError(f"{str(self.path)!r} goes on after its trailer")
                if record.get("record") == "trailer":
                    self.trailer, self.computed = record, (sha.hexdigest(), count)
                    continue
                if record.get("record") not in RECORDS:
                    raise ArchiveError(
                        f"{str(self.path)!r}: record {count + 1} is of no known kind "
                        f"({str(record.get('record'))[:40]!r})"
                    )
                sha.update(canonical)
                count += 1
                yield record
        except (ValueError, KeyError, TypeError, csv.Error) as exc:
            if isinstance(exc, ArchiveError):
                raise
            raise ArchiveError(
                f"{str(self.path)!r}: record {count + 1} cannot be read ({exc})"
            ) from None

    def _jsonl(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        with self.path.open("rb") as file:
            for line in file:
                if not line.endswith(b"\n"):  # a last line cut short: no trailer follows
                    return
                record = _loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                yield record, line

    def _record(self, cells: dict[str, str | None]) -> tuple[dict[str, Any], bytes]:
        kind = cells["record"]
        names = RECORDS.get(kind or "", ())
        own = [cells[name] for name in names]
        record: dict[str, Any] = {"record": kind}
        for name, cell in zip(names, own, strict=False):
            if cell is not None and name in INT_FIELDS:
                record[name] = int(cell)
            elif cell is not None and name in JSON_FIELDS:
                record[name] = json.loads(cell)
            else:
                record[name] = cell
        canonical = (_canonical([kind, *own]) + "\n").encode("utf-8", "surrogatepass")
        return record, canonical

    def _csv(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        if csv.field_size_limit() < _FIELD_LIMIT:  # a seal's members fill one field
            csv.field_size_limit(_FIELD_LIMIT)
        with self.path.open(encoding="utf-8", newline="") as file:
            rows = csv.reader(file)
            head = next(rows)
            missing = [name for name in COLUMNS if name not in head]
            if missing:
                raise ArchiveError(f"{str(self.path)!r} has no column {missing[0]!r}")
            page = io.StringIO(newline="")
            again = csv.writer(page)
            for row in rows:  # hashed as written: the same cells give the same CSV text
                page.seek(0)
                page.truncate()
                again.writerow(row)
                cells = {name: _unescape(cell) for name, cell in zip(head, row, strict=False)}
                cells["record"] = row[0]
                yield self._record(cells)[0], page.getvalue().encode("utf-8", "surrogatepass")

    def _parquet(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        pa = _pyarrow()
        try:
            parquet = pa.parquet.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveError(f"{str(self.path)!r} cannot be read as Parquet: {exc}") from None
        for batch in parquet.iter_batches(batch_size=10_000):
            columns = batch.to_pydict()
            for i in range(batch.num_rows):
                cells = {
                    name: None if values[i] is None else str(values[i])
                    for name, values in columns.items()
                }
                yield self._record(cast(dict[str, str | None], cells))
