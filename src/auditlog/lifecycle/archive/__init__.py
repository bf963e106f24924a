"""Archives: every entry older than a date, in a file that proves itself and can be imported back.

- ``records.py``: the record stream every format holds (header, entries, seals, trailer);
- ``writers.py`` and ``reader.py``: that stream as JSON Lines, CSV or Parquet;
- ``pages.py``: the entries read a page at a time along the primary key;
- ``export.py``: :func:`export_archive`, in one snapshot, in constant memory;
- ``verify.py``: :func:`verify_archive`, what ``auditlog.verify`` recomputes, from the file alone;
- ``load.py``: :func:`import_archive`, an archive written into a database.

See docs/archives.md.
"""

from __future__ import annotations

from .export import PAGE_SIZE, ExportResult, export_archive, id_floor
from .load import ImportResult, import_archive
from .reader import ArchiveReader
from .records import FORMATS, ArchiveError
from .verify import verify_archive
from .writers import open_writer

__all__ = [
    "FORMATS",
    "PAGE_SIZE",
    "ArchiveError",
    "ArchiveReader",
    "ExportResult",
    "ImportResult",
    "export_archive",
    "id_floor",
    "import_archive",
    "open_writer",
    "verify_archive",
]
