"""Entry ids: blocks of consecutive ULIDs, increasing within a flush whatever other threads do."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog.capture import ids
from auditlog.capture.ids import new_ulids, ulid_stream

from ..helpers import entries
from ..models import Customer

AT = dt.datetime(2025, 3, 4, 5, 6, 7, 891_000, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _fresh_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no id handed out yet."""
    monkeypatch.setattr(ids, "_last", 0)


def _ints(values: list[bytes]) -> list[int]:
    return [int.from_bytes(v, "big") for v in values]


def test_a_block_is_consecutive_and_stamped_with_its_time() -> None:
    block = new_ulids(AT, 50)
    assert len(block) == 50
    numbers = _ints(block)
    assert numbers == list(range(numbers[0], numbers[0] + 50))
    assert {ULID.from_bytes(v).datetime for v in block} == {AT}


def test_blocks_in_the_same_millisecond_continue_one_sequence() -> None:
    first = _ints(new_ulids(AT, 3))
    second = _ints(new_ulids(AT, 3))
    assert second[0] == first[-1] + 1


def test_a_stream_reserves_its_block_when_made_not_when_read() -> None:
    stream = ulid_stream(AT, 2)
    other = new_ulids(AT, 1)  # taken after the stream was made, before it was read
    mine = _ints(list(stream))
    assert mine == [mine[0], mine[0] + 1]
    assert _ints(other)[0] > mine[-1]


def test_an_unused_part_of_a_block_is_never_handed_out_again() -> None:
    stream = ulid_stream(AT, 10)
    taken = next(stream)
    later = new_ulids(AT, 1)[0]
    assert int.from_bytes(later, "big") >= int.from_bytes(taken, "big") + 10


def test_threads_never_interleave_inside_a_block() -> None:
    blocks: list[list[int]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        mine = [_ints(new_ulids(dt.datetime.now(dt.timezone.utc), 20)) for _ in range(200)]
        with lock:
            blocks.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [n for block in blocks for n in block]
    assert len(set(everything)) == len(everything) == 8 * 200 * 20
    spans = sorted((block[0], block[-1]) for block in blocks)
    for block in blocks:
        assert block == list(range(block[0], block[0] + 20))
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert begin > end  # no two blocks overlap


def test_an_empty_block_reserves_nothing() -> None:
    before = new_ulids(AT, 1)[0]
    assert new_ulids(AT, 0) == []
    assert int.from_bytes(new_ulids(AT, 1)[0], "big") == int.from_bytes(before, "big") + 1


def test_a_block_that_cannot_fit_its_millisecond_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    millis = int(AT.timestamp() * 1000)
    monkeypatch.setattr(ids, "_last", (millis << 80) | ((1 << 80) - 3))
    with pytest.raises(OverflowError, match="no room for 5 more ULIDs"):
        new_ulids(AT, 5)
    assert len(new_ulids(AT, 2)) == 2  # what fits is still handed out


def test_a_time_before_1970_is_refused() -> None:
    with pytest.raises(ValueError, match="48 bits of milliseconds"):
        new_ulids(dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc), 1)


def test_capture_runs_under_a_frozen_clock_that_gives_float_nanoseconds(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, Session_: sessionmaker[Session]
) -> None:
    """Time-freezing test tools patch the clock; one (hiro) makes ``time.time_ns()`` a float.
    Ids come from the datetime, so every write path still writes its entries."""
    import time

    auditlog.register(Customer)
    monkeypatch.setattr(time, "time_ns", lambda: 1.5778368e18)
    with Session_.begin() as session:
        session.add(Customer(id=1, name="frozen"))
    with Session_.begin() as session:
        session.execute(sa.update(Customer).where(Customer.id == 1).values(name="thawed"))
    assert [(e.action_type, e.object_id) for e in entries(engine)] == [
        ("create", "1"),
        ("update", "1"),
    ]
