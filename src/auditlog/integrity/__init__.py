"""Integrity: seals that make any later change to the log detectable, and their verification.

- ``tables.py``: ``audit_seal`` (the hash chain) and ``audit_seal_entry`` (each sealed entry, its
  key and digest), created with the other tables;
- ``digest.py``: the canonical form of an entry and the digests of entries and seals;
- ``seal.py``: :func:`seal`, run outside the application's transactions (``auditlog seal``);
- ``verify.py``: :func:`verify`, which recomputes everything and names every problem
  (``auditlog verify``);
- ``erase.py``: :func:`erase`, one data subject's values removed, the proof kept;
- ``guard.py``: :func:`protect`, triggers that refuse UPDATE and DELETE on the audit tables, and
  :func:`maintenance`, auditlog's own way past them.

See docs/integrity.md.
"""

from __future__ import annotations

from .erase import ErasureError, ErasureResult, erase
from .guard import maintenance, protect, unprotect
from .seal import SealResult, seal
from .tables import erasure_table, seal_entry_table, seal_table
from .verify import Problem, VerifyReport, verify

__all__ = [
    "ErasureError",
    "ErasureResult",
    "Problem",
    "SealResult",
    "VerifyReport",
    "erase",
    "erasure_table",
    "maintenance",
    "protect",
    "seal",
    "seal_entry_table",
    "seal_table",
    "unprotect",
    "verify",
]
