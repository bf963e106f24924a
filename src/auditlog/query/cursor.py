"""Keyset positions: the opaque, checksummed cursor token of a ``(timestamp, id)``."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import struct
from dataclasses import dataclass
from typing import Literal

from ulid import ULID

__all__ = ["Cursor"]

_CURSOR_VERSION = 1
_CURSOR_LAYOUT = struct.Struct(">Bcq16s")  # version, direction, epoch microseconds, ULID bytes
_CHECKSUM_SIZE = 4
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_SIZE, person=b"auditlog.cursor").digest()


@dataclass(frozen=True)
class Cursor:
    """A position in the history: the ``(timestamp, id)`` of one entry and the way to read on.

    ``direction`` is ``"next"`` (older entries, after this one) or ``"previous"`` (newer ones).
    :meth:`encode` gives the opaque URL-safe token; a checksum makes a mistyped or altered token
    an error. It is not a signature: a cursor grants nothing, every filter still applies.
    """

    timestamp: dt.datetime
    id: str
    direction: Literal["next", "previous"] = "next"

    def encode(self) -> str:
        """The token: URL-safe base64 without padding."""
        micros = (self.timestamp - _EPOCH) // dt.timedelta(microseconds=1)
        direction = b"n" if self.direction == "next" else b"p"
        payload = _CURSOR_LAYOUT.pack(
            _CURSOR_VERSION, direction, micros, bytes(ULID.from_str(self.id).bytes)
        )
        return base64.urlsafe_b64encode(payload + _checksum(payload)).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Read a token made by :meth:`encode`; ``ValueError`` when it is not one."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not a cursor returned by query_history_cursor()") from None
        payload, checksum = raw[:-_CHECKSUM_SIZE], raw[-_CHECKSUM_SIZE:]
        if len(payload) != _CURSOR_LAYOUT.size or checksum != _checksum(payload):
            raise ValueError("not a cursor returned by query_history_cursor()")
        version, direction, micros, ulid = _CURSOR_LAYOUT.unpack(payload)
        if version != _CURSOR_VERSION or direction not in (b"n", b"p"):
            raise ValueError("not a cursor returned by query_history_cursor()")
        try:
            timestamp = _EPOCH + dt.timedelta(microseconds=micros)
        except OverflowError:
            raise ValueError("not a cursor returned by query_history_cursor()") from None
        return cls(
            timestamp, str(ULID.from_bytes(ulid)), "next" if direction == b"n" else "previous"
        )
