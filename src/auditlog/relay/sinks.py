"""The sink interface and the loop that relays committed entries to a sink.

A sink takes batches of entries and answers only once they are durably stored, with its
position after them (a stream sequence, an offset; or null). A sink that can say which
entries it received after a position (:meth:`Sink.recover`) gets exactly-once delivery across
crashes: the relay asks it at start and records those entries before sending anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from .horizon import SafeBound
from .messages import RelayedEntry
from .source import RelaySource
from .status import RelayStatus, relay_status

__all__ = ["Recovery", "RelayProgress", "Sink", "describe", "run_relay"]

_log = logging.getLogger("auditlog.relay")


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What a sink holds after a position: the entry ids it received, and its position now."""

    ids: Sequence[str]
    position: int | None


@runtime_checkable
class Sink(Protocol):
    """Where a relay sends entries."""

    async def recover(self, after: int | None) -> Recovery:
        """The entries received after position ``after`` (all it can tell; none when
        ``after`` is null) and the position now."""
        ...

    async def send(self, entries: Sequence[RelayedEntry]) -> int | None:
        """Deliver ``entries`` (in this order); return once every one is durably acknowledged,
        with the position after them. Raise when any was not: the batch is sent again."""
        ...


@dataclasses.dataclass(frozen=True)
class RelayProgress:
    """A periodic report: entries relayed since start, rate over the interval, the status."""

    relayed: int
    rate: float
    status: RelayStatus


async def run_relay(
    source: RelaySource,
    sink: Sink,
    *,
    stop: asyncio.Event | None = None,
    once: bool = False,
    poll: float = 0.5,
    interval: float = 10.0,
    progress: Callable[[RelayProgress], None] | None = None,
    retry: float = 1.0,
    retries: int = 30,
) -> int:
    """Relay committed entries from ``source`` to ``sink`` until ``stop`` is set (or, with
    ``once``, until nothing is pending); returns how many entries were sent. A batch the sink
    fails to take is sent again after ``retry`` seconds, up to ``retries`` times in a row.

    At start, entries the sink received after the recorded position are recorded as relayed
    first. A round's entries are recorded (with the sink's position) only after the sink
    acknowledged all of them, so a relay killed at any point resumes without a gap.
    """
    stop = stop or asyncio.Event()
    position = source.start()
    found = await sink.recover(position)
    recovered = source.recover(found.ids, found.position)
    if recovered:
        _log.info("relay %s: %d entries found in the sink were recorded", source.name, recovered)
    sent = failures = 0
    mark, marked = time.monotonic(), 0

    def report() -> None:
        nonlocal mark, marked
        now = time.monotonic()
        status = relay_status(source.engine, source.name)
        rate = (sent - marked) / (now - mark) if now > mark else 0.0
        mark, marked = now, sent
        if status is not None:
            item = RelayProgress(sent, rate, status)
            if progress is not None:
                progress(item)
            else:
                _log.info("%s", describe(item))

    ahead: list[RelayedEntry] | None = None
    recording: asyncio.Future[SafeBound] | None = None  # the last batch's record, in a thread

    async def settle() -> None:
        nonlocal recording
        if recording is not None:
            pending, recording = recording, None
            await pending

    while not stop.is_set():
        if not ahead:
            await settle()  # a full read must not see a batch as not relayed yet
        batch = ahead if ahead else source.read()
        ahead = None
        if batch:
            try:
                if len(batch) == source.batch_size:  # a backlog: read the next batch meanwhile
                    position, ahead = await asyncio.gather(
                        sink.send(batch), asyncio.to_thread(source.read, batch[-1].id)
                    )
                else:
                    position = await sink.send(batch)
            except Exception as exc:  # the sink is down or slow: the batch is read again
                ahead = None
                await settle()
                failures += 1
                if failures > retries:
                    raise
                _log.warning(
                    "relay %s: sending failed (%s); retrying in %g s",
                    source.name,
                    str(exc) or type(exc).__name__,
                    retry,
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry)
                continue
            failures = 0
            await settle()  # records stay in order
            ids = [e.id for e in batch]
            recording = asyncio.ensure_future(asyncio.to_thread(source.record, ids, position))
            sent += len(batch)
        else:
            source.record([])
            if once:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), poll)
        if time.monotonic() - mark >= interval:
            await settle()
            report()
    await settle()
    report()
    return sent


def describe(progress: RelayProgress) -> str:
    """One log line: relayed count, rate, pending entries and lag."""
    status = progress.status
    line = (
        f"relay {status.name}: {progress.relayed:,} relayed ({progress.rate:,.0f}/s), "
        f"{status.pending:,} pending, lag {status.lag:.1f} s"
    )
    if status.note:
        line += f"; horizon held: {status.note}"
    return line
