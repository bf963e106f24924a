"""Time-ordered entry ids: ULIDs, monotonic within a millisecond so a flush's entries keep order."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

from ulid import LaxMonotonicPolicy, ULIDGenerator

__all__ = ["new_ulids", "ulid_stream"]

_generator = ULIDGenerator(policy=LaxMonotonicPolicy())


def new_ulids(at: dt.datetime, count: int) -> list[bytes]:
    """``count`` increasing ULIDs (16 raw bytes each) stamped with ``at``."""
    return list(itertools.islice(ulid_stream(at), count))


def ulid_stream(at: dt.datetime) -> Iterator[bytes]:
    """Increasing ULIDs (16 raw bytes each) stamped with ``at``, one per ``next()``."""
    generate = _generator.generate
    millis = int(at.timestamp() * 1000)  # converted once, not once per id
    while True:
        yield generate(millis).bytes
