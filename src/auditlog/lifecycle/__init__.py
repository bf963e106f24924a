"""Lifecycle: years of entries cheap to keep, to drop and to archive.

- ``tables.py``: ``audit_prune`` and ``audit_prune_entry``, what each prune removed, so that
  ``verify`` tells pruned entries from removed ones;
- ``prune.py``: :func:`prune`, retention in short transactions (``auditlog prune``);
- ``partitions.py``: monthly partitions on PostgreSQL (``auditlog partitions``), whole months
  dropped by :func:`prune`;
- ``archive/``: archives that can be verified offline and imported back (``auditlog export``,
  ``auditlog import``, ``auditlog verify --archive``).

See docs/lifecycle.md.
"""

from __future__ import annotations

from .archive import (
    ArchiveError,
    ExportResult,
    ImportResult,
    export_archive,
    import_archive,
    verify_archive,
)
from .partitions import Partition, create_partitions, drop_partitions, list_partitions
from .prune import PruneProgress, PruneResult, prune
from .tables import prune_entry_table, prune_table

__all__ = [
    "ArchiveError",
    "ExportResult",
    "ImportResult",
    "Partition",
    "PruneProgress",
    "PruneResult",
    "create_partitions",
    "drop_partitions",
    "export_archive",
    "import_archive",
    "list_partitions",
    "prune",
    "prune_entry_table",
    "prune_table",
    "verify_archive",
]
