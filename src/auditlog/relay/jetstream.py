"""The NATS JetStream sink (the ``[nats]`` extra: ``pip install 'sqlalchemy-auditlog[nats]'``).

Each entry is one message: JSON of the entry, on a subject made from a template, with the
entry id as ``Nats-Msg-Id`` (JetStream drops a duplicate within the stream's duplicate window)
and the relay's name in ``Auditlog-Relay``. After a crash the relay asks :meth:`recover` for
the messages stored after the last recorded sequence, which covers restarts after the window.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from .sinks import Recovery
from .source import DEFAULT_NAME, RelayedEntry

__all__ = [
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT",
    "EMPTY_TOKEN",
    "NULL_TOKEN",
    "JetStreamSink",
    "SubjectTemplate",
    "subject_token",
]

DEFAULT_STREAM = "AUDITLOG"
DEFAULT_SUBJECT = "auditlog.{tenant}.{model}"
#: The token of a null value (an entry without tenant); a value ``_`` is written ``%5F``.
NULL_TOKEN = "_"
#: The token of an empty value; a value ``~`` is written ``%7E``.
EMPTY_TOKEN = "~"
PLACEHOLDERS = ("tenant", "model", "action", "content_type")
RELAY_HEADER = "Auditlog-Relay"
MSG_ID = "Nats-Msg-Id"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-:@!+=,;()\[\]{}#$&'^|]")
_TOKEN = re.compile(r"^[^\s.*>]+$")


def subject_token(value: object) -> str:
    """``value`` as one NATS subject token: letters, digits and ``_-:@!+=,;()[]{}#$&'^|``
    kept, any other character (dots, wildcards, spaces, ``%``, ``~``, non-ASCII) percent-encoded
    from UTF-8; null as ``_``, an empty value as ``~``. Reversible with
    ``urllib.parse.unquote``."""
    if value is None:
        return NULL_TOKEN
    text = str(value)
    if text == NULL_TOKEN:
        return "%5F"
    if not text:
        return EMPTY_TOKEN
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


class SubjectTemplate:
    """A subject such as ``auditlog.{tenant}.{model}``; placeholders: ``{tenant}``, ``{model}``
    (the content type's name), ``{action}``, ``{content_type}`` (its id)."""

    def __init__(self, template: str) -> None:
        self.template = template
        try:
            fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ConfigurationError(f"subject template {template!r}: {exc}") from None
        for field in fields:
            if field not in PLACEHOLDERS:
                raise ConfigurationError(
                    f"subject template {template!r}: unknown placeholder {{{field}}} "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
        tokens = template.split(".")
        for token in tokens:
            if not _TOKEN.match(token):
                raise ConfigurationError(
                    f"subject template {template!r}: {token!r} is not a subject token "
                    "(empty, or with a space, '*' or '>')"
                )
        #: the subjects a stream needs to hold every message: each token with a placeholder
        #: becomes ``*``
        self.wildcard = ".".join("*" if "{" in token else token for token in tokens)
        self._cache: dict[tuple[object, ...], str] = {}

    def subject(self, relayed: RelayedEntry) -> str:
        entry = relayed
        key = (entry.tenant_id, entry.model, entry.action_type, entry.content_type)
        subject = self._cache.get(key)
        if subject is None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            subject = self._cache[key] = self.template.format(
                tenant=subject_token(entry.tenant_id),
                model=subject_token(entry.model),
                action=subject_token(entry.action_type),
                content_type=subject_token(entry.content_type),
            )
        return subject


def covers(pattern: str, subject: str) -> bool:
    """Whether the stream subject ``pattern`` holds every subject matching ``subject``
    (whose ``*`` tokens stand for any token)."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(wanted) == len(tokens)


def _nats() -> Any:
    try:
        import nats
    except ImportError:
        raise ConfigurationError(
            "the relay to NATS needs nats-py: pip install 'sqlalchemy-auditlog[nats]'"
        ) from None
    return nats


class JetStreamSink:
    """Publishes entries to a JetStream stream, created (``subjects``: the template's wildcard)
    when missing; ``replicas`` applies only then."""

    def __init__(
        self,
        servers: str | list[str],
        *,
        stream: str = DEFAULT_STREAM,
        subject: str = DEFAULT_SUBJECT,
        relay_name: str = DEFAULT_NAME,
        replicas: int = 1,
        timeout: float = 10.0,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", stream):
            raise ConfigurationError(f"stream name {stream!r}: letters, digits, '_' and '-' only")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.stream = stream
        self.template = SubjectTemplate(subject)
        self.relay_name = relay_name
        self.replicas = replicas
        self.timeout = timeout
        self._nc: Any = None
        self._js: Any = None
        self._acks = _Acks("")

    async def connect(self) -> None:
        """Connect and make sure the stream exists."""
        nats = _nats()
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        async def quiet(_exc: Exception) -> None:  # reconnection is nats-py's job
            return None

        await self._probe()
        try:
            self._nc = await nats.connect(
                servers=self.servers,
                connect_timeout=min(self.timeout, 5.0),
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                reconnect_time_wait=0.5,
                error_cb=quiet,
            )
        except Exception as exc:
            raise ConnectionError(
                f"cannot connect to NATS at {', '.join(self.servers)}: {exc or type(exc).__name__}"
            ) from None
        self._js = self._nc.jetstream(timeout=self.timeout)
        self._acks = _Acks(self._nc.new_inbox())
        await self._nc.subscribe(f"{self._acks.prefix}.>", cb=self._acks.received)
        try:
            info = await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream, subjects=[self.template.wildcard], num_replicas=self.replicas
                )
            )
            return
        subjects = list(info.config.subjects or [])
        if not any(covers(pattern, self.template.wildcard) for pattern in subjects):
            raise ConfigurationError(
                f"stream {self.stream!r} holds {', '.join(subjects) or 'no subjects'}, not "
                f"{self.template.wildcard!r}: choose another --stream or --subject"
            )

    async def _probe(self) -> None:
        """Fail at once when no server answers (nats-py would retry the first connection)."""
        for server in self.servers:
            location = urlsplit(server if "://" in server else f"nats://{server}")
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(location.hostname, location.port or 4222),
                    min(self.timeout, 5.0),
                )
            except (OSError, asyncio.TimeoutError, ValueError):
                continue
            writer.close()
            return
        raise ConnectionError(f"cannot connect to NATS at {', '.join(self.servers)}")

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def __aenter__(self) -> JetStreamSink:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def recover(self, after: int | None) -> Recovery:
        """The entry ids this relay's messages carry after sequence ``after``."""
        from nats.js.errors import NotFoundError

        info = await self._js.stream_info(self.stream)
        last = int(info.state.last_seq)
        if after is None:
            return Recovery([], last)
        first = max(after + 1, int(info.state.first_seq))

        async def fetch(seq: int) -> str | None:
            try:
                msg = await self._js.get_msg(self.stream, seq)
            except NotFoundError:
                return None
            headers = msg.headers or {}
            if headers.get(RELAY_HEADER) != self.relay_name:
                return None
            value = headers.get(MSG_ID)
            return value if isinstance(value, str) else None

        ids: list[str] = []
        for start in range(first, last + 1, 256):
            found = await asyncio.gather(
                *(fetch(s) for s in range(start, min(last, start + 255) + 1))
            )
            ids.extend(i for i in found if i is not None)
        return Recovery(ids, last if last > after else after)

    async def send(self, entries: Sequence[RelayedEntry]) -> int | None:
        """Publish every entry, then wait for every acknowledgement; the highest sequence.

        Each message asks for its acknowledgement on ``<inbox>.<batch>.<index>``, read by one
        subscription of the sink's own (:class:`_Acks`): JetStream's per-message futures, reply
        tokens and parsed acknowledgement objects cost more than the publishing itself."""
        if not entries:
            return None
        acks = self._acks
        batch = acks.expect(len(entries))
        reply = f"{acks.prefix}.{batch.number}."
        publish, subject, name = self._nc.publish, self.template.subject, self.relay_name
        try:
            for index, relayed in enumerate(entries):
                await publish(
                    subject(relayed),
                    relayed.json(),
                    reply=reply + str(index),
                    headers={MSG_ID: relayed.id, RELAY_HEADER: name},
                )
            return await asyncio.wait_for(asyncio.shield(batch.done), self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"JetStream acknowledged {batch.count:,} of {len(entries):,} messages within "
                f"{self.timeout:g} s"
            ) from None
        finally:
            acks.forget(batch)


class _Batch:
    """The acknowledgements awaited for one batch: which arrived, the highest sequence."""

    __slots__ = ("count", "done", "number", "seen", "seq")

    def __init__(self, number: int, size: int) -> None:
        self.number, self.seen, self.count, self.seq = number, bytearray(size), 0, 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class _Acks:
    """The sink's acknowledgement subscription: ``<inbox>.<batch>.<index>`` for each message.

    An acknowledgement is ``{"stream":...,"seq":N}`` (``"duplicate":true`` for a message id
    already stored, with that message's sequence), ``{"error":{...}}`` when the stream refused
    the message, or an empty message with status 503 when no stream holds the subject."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._batches: dict[int, _Batch] = {}
        self._next = 0
        self._skip = len(prefix) + 1

    def expect(self, size: int) -> _Batch:
        self._next += 1
        batch = self._batches[self._next] = _Batch(self._next, size)
        return batch

    def forget(self, batch: _Batch) -> None:
        self._batches.pop(batch.number, None)

    async def received(self, msg: Any) -> None:
        number, _, index = msg.subject[self._skip :].partition(".")
        batch = self._batches.get(int(number)) if number.isdigit() else None
        if batch is None or batch.done.done() or not index.isdigit():
            return  # a batch given up (timed out, failed): sent again under a new number
        slot = int(index)
        if slot >= len(batch.seen) or batch.seen[slot]:
            return
        data = msg.data
        match = _SEQ.search(data)
        if match is None or b'"error"' in data:
            batch.done.set_exception(_refusal(msg))
            return
        batch.seen[slot] = 1
        batch.count += 1
        seq = int(match[1])
        if seq > batch.seq:
            batch.seq = seq
        if batch.count == len(batch.seen):
            batch.done.set_result(batch.seq)


_SEQ = re.compile(rb'"seq":\s*(\d+)')


def _refusal(msg: Any) -> Exception:
    """The error of an acknowledgement that is not one."""
    headers = msg.headers or {}
    if not msg.data and headers.get("Status") == "503":
        return ConnectionError("no JetStream stream answers the subject (503 no responders)")
    try:
        error = json.loads(msg.data).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    description = error.get("description") or msg.data[:200].decode("utf-8", "replace")
    code = error.get("err_code") or error.get("code")
    return ConnectionError(f"JetStream refused a message: {description} (code {code})")
