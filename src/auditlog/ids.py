"""Time-ordered entry ids: ULIDs, monotonic within a millisecond so a flush's entries keep order."""

from __future__ import annotations

import datetime as dt

from ulid import LaxMonotonicPolicy, ULIDGenerator

__all__ = ["new_ulids"]

_generator = ULIDGenerator(policy=LaxMonotonicPolicy())


def new_ulids(at: dt.datetime, count: int) -> list[bytes]:
    """``count`` increasing ULIDs (16 raw bytes each) stamped with ``at``."""
    generate = _generator.generate
    millis = int(at.timestamp() * 1000)  # converted once, not once per id
    return [generate(millis).bytes for _ in range(count)]
