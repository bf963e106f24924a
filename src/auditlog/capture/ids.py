"""Time-ordered entry ids: ULIDs, handed out in blocks so that a flush's entries keep their order.

A flush reserves one block of consecutive ULIDs stamped with its time, under one lock: no other
thread's id can fall between two of its entries, and within a millisecond a block continues
after the previous one (the monotonic ULID rule). Each id of the block then costs an integer
increment, not a call to a generator. python-ulid parses and formats them everywhere else.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator

__all__ = ["new_ulids", "ulid_stream"]

_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0  # the highest id handed out, as a 128-bit integer


def _reserve(millis: int, count: int) -> int:
    """The first of ``count`` consecutive ids in millisecond ``millis``, none handed out before."""
    global _last
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"a ULID timestamp must be within 48 bits of milliseconds, got {millis}")
    with _lock:
        if _last >> _RANDOM_BITS == millis:
            first = _last + 1  # the same millisecond: continue its sequence
        else:
            # fresh randomness; its top bit is left clear, so a block never runs out of room
            first = millis << _RANDOM_BITS | int.from_bytes(os.urandom(10), "big") >> 1
        end = first + count - 1
        if end >> _RANDOM_BITS != millis:
            raise OverflowError(f"no room for {count} more ULIDs in millisecond {millis}")
        if end > _last:
            _last = end
    return first


def ulid_stream(at: dt.datetime, count: int) -> Iterator[bytes]:
    """``count`` increasing ULIDs (16 raw bytes each) stamped with ``at``, one per ``next()``.

    The block is reserved at once; ids a caller does not take are simply never used.
    """
    if count <= 0:
        return iter(())
    first = _reserve(int(at.timestamp() * 1000), count)
    return (value.to_bytes(16, "big") for value in range(first, first + count))


def new_ulids(at: dt.datetime, count: int) -> list[bytes]:
    """``count`` increasing ULIDs (16 raw bytes each) stamped with ``at``."""
    return list(ulid_stream(at, count))
