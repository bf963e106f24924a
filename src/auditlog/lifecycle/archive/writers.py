"""Writing an archive: one writer per format, each counting the records and hashing them for
the trailer (the formats are described in ``records.py``)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from json.encoder import encode_basestring
from typing import IO, Any

from ...ulids import ulid_texts
from .records import (
    COLUMNS,
    ENTRY,
    INT_FIELDS,
    JSON_FIELDS,
    RECORDS,
    ArchiveError,
    canonical_json,
    cell_text,
    dumps,
    escape,
    pyarrow_module,
)

__all__ = ["ArchiveWriter", "open_writer"]


class _Output:
    """Hashes and writes pages of bytes on a thread of its own, in order, while the caller makes
    the next page (both release the GIL: the file and the hash keep up with the formatting
    instead of adding to it); at most ``depth`` pages wait, so memory stays bounded. An error
    of the thread (a full disk) is raised by the next :meth:`put` or by :meth:`close`."""

    def __init__(self, out: IO[bytes], sha: Any, depth: int = 4) -> None:
        self.out, self.sha, self.depth = out, sha, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="auditlog-archive")
        self.pending: deque[Future[None]] = deque()

    def _write(self, data: bytes, hashed: bool) -> None:
        if hashed:
            self.sha.update(data)
        self.out.write(data)

    def put(self, data: bytes, hashed: bool = True) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, data, hashed))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


class ArchiveWriter:
    """Writes records in one format and counts them; :meth:`close` writes the trailer,
    :meth:`abandon` stops after an error."""

    threaded = False

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.records = self.entries_written = self.seals = 0
        self.output = _Output(out, self.sha) if self.threaded else None

    def _emit(self, data: bytes, hashed: bool = True) -> None:
        """Bytes of records, hashed for the trailer unless ``hashed`` is false, then written."""
        if self.output is not None:
            self.output.put(data, hashed)
            return
        if hashed:
            self.sha.update(data)
        self.out.write(data)

    def _drain(self) -> None:
        """Waits for every page written so far; what follows is written in place."""
        if self.output is not None:
            output, self.output = self.output, None
            output.close()

    def abandon(self) -> None:
        """Stops writing (the archive stays incomplete: it has no trailer)."""
        if self.output is not None:
            output, self.output = self.output, None
            output.pool.shutdown(wait=True, cancel_futures=True)

    def record(self, kind: str, values: dict[str, Any]) -> None:
        self._write(kind, [values.get(name) for name in RECORDS[kind]])
        self.records += 1
        self.seals += kind == "seal"

    def entries(self, rows: Sequence[Sequence[Any]], *, ids_as_bytes: bool = False) -> None:
        """Entry records, each its :data:`ENTRY` values (JSON-valued ones as JSON text; the
        ids as their 16 bytes when ``ids_as_bytes``)."""
        if ids_as_bytes and not isinstance(self, _JsonLines):
            rows = _ids_as_text(rows)
            ids_as_bytes = False
        self._entries(rows, ids_as_bytes)
        self.records += len(rows)
        self.entries_written += len(rows)

    def close(self) -> None:
        self._drain()  # every record hashed before the trailer takes the digest
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


def _line_function(ids_given: bool = False) -> Any:
    """``line(row) -> str``: one entry record's JSON line, as one f-string (this runs per entry):
    texts escaped, integers and JSON text as they are, ids and times quoted; with ``ids_given``,
    ``line(row, id, transaction_id)``: the ids' texts made beforehand, many at once."""
    parts = ['f"""{{"record":"entry"']
    for i, name in enumerate(ENTRY):
        value = f"r[{i}]"
        if name == "id":
            shown = '"{i}"' if ids_given else f'"{{{value}}}"'
        elif name == "timestamp":
            shown = f'"{{{value}}}"'
        elif name == "transaction_id":
            text = "t" if ids_given else value
            shown = f"""{{'null' if {value} is None else '"' + {text} + '"'}}"""
        elif name in JSON_FIELDS:
            shown = f"{{'null' if {value} is None else _one_line({value})}}"
        elif name in INT_FIELDS:
            shown = f"{{'null' if {value} is None else {value}}}"
        else:
            shown = f"{{'null' if {value} is None else q({value})}}"
        parts.append(f',"{name}":{shown}')
    parts.append('}}\\n"""')
    arguments = "r, i, t, q=encode_basestring" if ids_given else "r, q=encode_basestring"
    source = f"def line({arguments}):\n    return " + "".join(parts) + "\n"
    namespace: dict[str, Any] = {"encode_basestring": encode_basestring, "_one_line": _one_line}
    exec(source, namespace)
    return namespace["line"]


def _one_line(text: str) -> str:
    """JSON text on one line (a line break is whitespace between JSON tokens)."""
    return text.replace("\n", " ").replace("\r", " ") if "\n" in text or "\r" in text else text


class _JsonLines(ArchiveWriter):
    threaded = True
    _line = staticmethod(_line_function())
    _line_with_ids = staticmethod(_line_function(ids_given=True))

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        record = {"record": kind, **dict(zip(RECORDS[kind], values, strict=True))}
        self._emit((dumps(record) + "\n").encode(), hashed)

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        if ids_as_bytes:
            line, ids, txns = self._line_with_ids, *_id_texts(rows)
            lines = [line(row, i, t) for row, i, t in zip(rows, ids, txns, strict=True)]
        else:
            lines = [self._line(row) for row in rows]
        self._emit("".join(lines).encode("utf-8", "surrogatepass"))

    def _finish(self) -> None:
        self._drain()
        self.out.flush()


_ID, _TXN = ENTRY.index("id"), ENTRY.index("transaction_id")
_NO_ID = bytes(16)


def _id_texts(rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[str]]:
    """The texts of the rows' ids and transaction ids (16 bytes each, the latter maybe null:
    then a text that is not used), converted many at once."""
    ids = ulid_texts([row[_ID] for row in rows])
    return ids, ulid_texts([row[_TXN] or _NO_ID for row in rows])


def _ids_as_text(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    out = []
    for row, i, t in zip(rows, *_id_texts(rows), strict=True):
        cells = list(row)
        cells[_ID] = i
        if cells[_TXN] is not None:
            cells[_TXN] = t
        out.append(cells)
    return out


class _Csv(ArchiveWriter):
    """Rows made a page at a time in memory, hashed as written, then written."""

    threaded = True

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(out)
        self._rows([list(COLUMNS)], hashed=False)
        self.places = {kind: [COLUMNS.index(n) for n in names] for kind, names in RECORDS.items()}

    def _rows(self, rows: list[list[str]], hashed: bool = True) -> None:
        page = io.StringIO(newline="")
        csv.writer(page).writerows(rows)
        self._emit(page.getvalue().encode("utf-8", "surrogatepass"), hashed)

    def _write(self, kind: str, values: list[Any], hashed: bool = True) -> None:
        row = ["\\N"] * len(COLUMNS)
        row[0] = kind
        for place, name, value in zip(self.places[kind], RECORDS[kind], values, strict=True):
            row[place] = escape(cell_text(name, value))
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
        self._drain()
        self.out.flush()


class _Parquet(ArchiveWriter):
    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(out)
        pa = self.pa = pyarrow_module()
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
            cell_text(n, v) if n not in INT_FIELDS else v
            for n, v in zip(names, values, strict=False)
        ]
        if hashed:
            texts = [None if c is None else str(c) for c in cells]
            self.sha.update(
                (canonical_json([kind, *texts]) + "\n").encode("utf-8", "surrogatepass")
            )
        self._table(kind, [[kind, *cells]])

    def _entries(self, rows: Sequence[Sequence[Any]], ids_as_bytes: bool = False) -> None:
        if not rows:
            return
        self.sha.update(
            "".join(
                canonical_json(["entry", *(None if v is None else str(v) for v in row)]) + "\n"
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
