"""ULIDs between their forms: 16 bytes, 32 hex digits (as stored), 26 characters of Crockford
base 32 (as shown).

These conversions run once per entry on every read, relay, seal and export, so they look up 10
bits at a time in tables instead of going through ``ulid.ULID`` objects (about five times
faster); :func:`ulid_texts` converts many at once with a few operations on one large integer
(about five times faster again). python-ulid still makes new ULIDs and reads every spelling the fast path leaves to it
(lowercase text, and text that is not a ULID, which it refuses with its own message).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ulid import ULID

__all__ = ["ulid_floor", "ulid_int", "ulid_text", "ulid_texts"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Crockford base 32 of every 10 bits: two characters.
_PAIRS = [_CROCKFORD[i >> 5] + _CROCKFORD[i & 31] for i in range(1024)]
_PAIR_VALUES = {pair: value for value, pair in enumerate(_PAIRS)}


def ulid_text(raw: bytes, _pairs: list[str] = _PAIRS, _int: Any = int.from_bytes) -> str:
    """The 26-character ULID of 16 bytes (``str(ULID.from_bytes(raw))``)."""
    n: int = _int(raw, "big")
    t = _pairs
    return (
        t[n >> 120] + t[(n >> 110) & 1023] + t[(n >> 100) & 1023] + t[(n >> 90) & 1023]
        + t[(n >> 80) & 1023] + t[(n >> 70) & 1023] + t[(n >> 60) & 1023]
        + t[(n >> 50) & 1023] + t[(n >> 40) & 1023] + t[(n >> 30) & 1023]
        + t[(n >> 20) & 1023] + t[(n >> 10) & 1023] + t[n & 1023]
    )  # fmt: skip


def ulid_int(text: str, _values: dict[str, int] = _PAIR_VALUES) -> int:
    """The 128-bit value of a ULID's text; ``ValueError`` when it is not one."""
    v = _values
    try:
        if len(text) == 26:
            n = (
                v[text[0:2]] << 120 | v[text[2:4]] << 110 | v[text[4:6]] << 100
                | v[text[6:8]] << 90 | v[text[8:10]] << 80 | v[text[10:12]] << 70
                | v[text[12:14]] << 60 | v[text[14:16]] << 50 | v[text[16:18]] << 40
                | v[text[18:20]] << 30 | v[text[20:22]] << 20 | v[text[22:24]] << 10
                | v[text[24:26]]
            )  # fmt: skip
            if n >> 128 == 0:
                return n
    except KeyError:
        pass
    return int.from_bytes(ULID.from_str(text).bytes, "big")


def ulid_floor(moment: dt.datetime) -> str:
    """The smallest ULID of ``moment``'s millisecond (an aware time): every entry written
    earlier has a smaller id."""
    millis = max(0, int(moment.timestamp() * 1000))
    return ulid_text(millis.to_bytes(6, "big") + bytes(10))


#: The Crockford characters of the byte values 0-31 (:func:`ulid_texts`).
_BYTE_CHARS = bytes(_CROCKFORD.encode()[i] if i < 32 else 0 for i in range(256))
#: How many ULIDs :func:`ulid_texts` converts per integer, and its masks for that many.
_CHUNK = 1024
_ZERO = bytes(16)


def _spread_masks() -> list[tuple[int, int, int]]:
    """Five steps that spread the 32 five-bit groups of a 256-bit slot (a ULID in its low 130
    bits) into its 32 bytes, one group a byte: each step moves the upper half of every block
    (80 bits of a 256-bit block, then 40 of 128, 20 of 64, 10 of 32, 5 of 16) to the block's
    upper half. Masks for :data:`_CHUNK` slots side by side: ``(shift, keep, move)``."""
    steps = []
    for width, block in ((80, 256), (40, 128), (20, 64), (10, 32), (5, 16)):
        keep = move = 0
        for base in range(0, 256, block):
            keep |= ((1 << width) - 1) << base
            move |= ((1 << width) - 1) << (base + width)
        shift = block // 2 - width
        keeps = int.from_bytes(keep.to_bytes(32, "big") * _CHUNK, "big")
        moves = int.from_bytes(move.to_bytes(32, "big") * _CHUNK, "big")
        steps.append((shift, keeps, moves))
    return steps


_SPREAD = _spread_masks()


def ulid_texts(raws: list[bytes]) -> list[str]:
    """The 26-character ULIDs of many 16-byte values, in order (``[ulid_text(r) for r in
    raws]``): each chunk of values side by side in one integer, 256 bits each, their five-bit
    groups spread into bytes by five mask-and-shift steps, then mapped to characters by
    ``bytes.translate``. Every value must be 16 bytes."""
    out: list[str] = []
    for start in range(0, len(raws), _CHUNK):
        chunk = raws[start : start + _CHUNK]
        if set(map(len, chunk)) != {16}:
            raise ValueError("ulid_texts() takes values of 16 bytes")
        joined = _ZERO + _ZERO.join(chunk)
        v = int.from_bytes(joined, "big")
        for shift, keep, move in _SPREAD:
            v = (v & keep) | ((v & move) << shift)
        text = v.to_bytes(len(joined), "big").translate(_BYTE_CHARS).decode("ascii")
        out += [text[i + 6 : i + 32] for i in range(0, len(joined), 32)]
    return out
