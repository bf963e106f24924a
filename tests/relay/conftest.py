"""A NATS server for the relay's tests, a stream of its own per test, and readers of the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ..backends import IN_CI

NATS_URL = os.environ.get("AUDITLOG_TEST_NATS_URL", "nats://127.0.0.1:4222")
COMMAND = [sys.executable, "-m", "auditlog", "relay"]


def reachable(url: str) -> bool:
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Stream:
    """A stream for one test: its name, the subject template the relay publishes with."""

    url: str
    name: str
    subject: str

    def args(self, engine: Engine, *more: str) -> list[str]:
        """The command line of a relay of ``engine`` into this stream."""
        return [
            *COMMAND,
            "--database-url",
            engine.url.render_as_string(hide_password=False),
            "--nats",
            self.url,
            "--stream",
            self.name,
            "--subject",
            self.subject,
            *more,
        ]


@dataclass(frozen=True)
class Message:
    seq: int
    subject: str
    msg_id: str
    body: dict[str, Any]


async def read_stream(url: str | list[str], stream: str) -> list[Message]:
    """Every message the stream holds, in sequence order."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers=url if isinstance(url, list) else [url])
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(stream)
        first, last = int(info.state.first_seq), int(info.state.last_seq)
        if not info.state.messages:
            return []

        async def get(seq: int) -> Message | None:
            try:
                msg = await js.get_msg(stream, seq)
            except NotFoundError:
                return None
            return Message(
                seq, msg.subject, (msg.headers or {}).get("Nats-Msg-Id", ""), json.loads(msg.data)
            )

        found: list[Message | None] = []
        for start in range(first, last + 1, 500):
            found += await asyncio.gather(
                *(get(s) for s in range(start, min(last, start + 499) + 1))
            )
        return [m for m in found if m is not None]
    finally:
        await nc.close()


async def add_stream(url: str | list[str], name: str, subjects: list[str], **config: Any) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(servers=url if isinstance(url, list) else [url])
    try:
        await nc.jetstream(timeout=10).add_stream(
            StreamConfig(name=name, subjects=subjects, **config)
        )
    finally:
        await nc.close()


async def delete_stream(url: str | list[str], name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers=url if isinstance(url, list) else [url])
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream(timeout=10).delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
def nats_url() -> str:
    if not reachable(NATS_URL):
        message = (
            f"no NATS server at {NATS_URL} (set AUDITLOG_TEST_NATS_URL, or run nats-server -js)"
        )
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return NATS_URL


@pytest.fixture
def stream(nats_url: str) -> Iterator[Stream]:
    """A stream name and subject prefix no other test (or user of the server) has; deleted after."""
    suffix = uuid.uuid4().hex[:12]
    s = Stream(nats_url, f"AUDITLOG_TEST_{suffix}", f"t{suffix}.{{tenant}}.{{model}}")
    yield s
    asyncio.run(delete_stream(nats_url, s.name))


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
