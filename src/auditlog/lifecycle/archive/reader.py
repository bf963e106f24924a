"""Reading an archive: its records as Python values, whatever its format, and its trailer
checked against what was read."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from .records import (
    COLUMNS,
    INT_FIELDS,
    JSON_FIELDS,
    RECORDS,
    ArchiveError,
    canonical_json,
    loads,
    pyarrow_module,
    unescape,
)

__all__ = ["ArchiveReader"]

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
                record = loads(line)
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
        canonical = (canonical_json([kind, *own]) + "\n").encode("utf-8", "surrogatepass")
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
                cells = {name: unescape(cell) for name, cell in zip(head, row, strict=False)}
                cells["record"] = row[0]
                yield self._record(cells)[0], page.getvalue().encode("utf-8", "surrogatepass")

    def _parquet(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        pa = pyarrow_module()
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
