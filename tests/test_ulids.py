"""ULID conversions: the table-driven ones give exactly what python-ulid gives, and leave every
other spelling (lowercase, not a ULID) to it."""

from __future__ import annotations

import os

import pytest
from ulid import ULID

from auditlog.models import ulid_hex
from auditlog.ulids import ulid_int, ulid_text, ulid_texts

EDGES = [bytes(16), b"\xff" * 16, bytes(15) + b"\x01", b"\x80" + bytes(15)]


@pytest.mark.parametrize("raw", EDGES + [os.urandom(16) for _ in range(200)])
def test_text_and_value_match_python_ulid(raw: bytes) -> None:
    text = ulid_text(raw)
    assert text == str(ULID.from_bytes(raw))
    assert ulid_int(text) == int.from_bytes(raw, "big")
    assert ulid_hex(text) == raw.hex() == ulid_hex(raw)


@pytest.mark.parametrize("count", [0, 1, 2, 1023, 1024, 1025, 3000])
def test_many_at_once_are_the_texts_one_at_a_time(count: int) -> None:
    raws = (EDGES * count)[: count // 2] + [os.urandom(16) for _ in range(count - count // 2)]
    assert ulid_texts(raws) == [str(ULID.from_bytes(r)) for r in raws]


@pytest.mark.parametrize("bad", [[b"short"], [bytes(16), bytes(15), bytes(17)]])
def test_many_at_once_refuses_values_that_are_not_16_bytes(bad: list[bytes]) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ulid_texts(bad)


def test_text_order_is_id_order() -> None:
    raws = sorted(os.urandom(16) for _ in range(500))
    assert sorted(ulid_text(r) for r in raws) == [ulid_text(r) for r in raws]


def test_lowercase_text_is_read_as_python_ulid_reads_it() -> None:
    raw = os.urandom(16)
    assert ulid_int(ulid_text(raw).lower()) == int.from_bytes(raw, "big")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("81HZ8HJ29G3YP5HA8J5D1JZE1J", "overflow"),  # beyond 128 bits
        ("01HZ8HJ29G3YP5HA8J5D1JZE1U", "letters"),  # U is not Crockford base 32
        ("01HZ8HJ29G3YP5HA8J5D1JZE1", "26 characters"),
        ("", "26 characters"),
    ],
)
def test_text_that_is_not_a_ulid_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ulid_int(text)
