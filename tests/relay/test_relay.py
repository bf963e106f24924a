"""The relay on every backend, against a real JetStream: each committed entry once, rolled-back
ones never, late commits not skipped, the position kept across a crash."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog.relay import RelaySource, committed_entries, run_relay
from auditlog.relay.jetstream import JetStreamSink, subject_token

from ..helpers import entries
from ..models import Customer
from .conftest import COMMAND, Stream, add_stream, delete_stream, read_stream, run


def write(
    maker: sessionmaker[Session], n: int, *, tenant: str | None = "acme", start: int = 1
) -> None:
    auditlog.register(Customer)
    for i in range(start, start + n):
        with auditlog.audit_context(tenant_id=tenant, user_id="u1"), maker.begin() as session:
            session.add(Customer(id=i, name=f"customer {i}", tenant_id=tenant))


async def relay_once(
    engine: Engine,
    stream: Stream,
    *,
    name: str = "default",
    margin: float = 10.0,
    batch: int = 1000,
) -> int:
    source = RelaySource(engine, name=name, batch_size=batch, margin=margin)
    async with JetStreamSink(
        stream.url, stream=stream.name, subject=stream.subject, relay_name=name
    ) as sink:
        return await run_relay(source, sink, once=True)


def committed_ids(engine: Engine) -> list[str]:
    return sorted(e.id for e in entries(engine))


async def test_each_committed_entry_is_published_once_with_its_id_subject_and_json(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    write(Session_, 25)
    write(Session_, 3, tenant=None, start=100)
    with auditlog.audit_context(tenant_id="acme"), Session_.begin() as session:
        customer = session.get(Customer, 1)
        assert customer is not None
        customer.name, customer.email = "renamed", "a@example.com"  # an update: a diff
    assert await relay_once(engine, stream, batch=7) == 29
    assert await relay_once(engine, stream) == 0  # nothing new: nothing sent again
    messages = await read_stream(stream.url, stream.name)
    assert [m.msg_id for m in messages] == committed_ids(engine)  # in id order, once each
    first = messages[0]
    entry = auditlog.query_history(Session(engine), page_size=1000).results
    shown = {e.id: e.model_dump(mode="json") for e in entry}
    assert all(m.body == shown[m.msg_id] for m in messages)  # the GET /history/ shape
    update = next(m.body for m in messages if m.body["action_type"] == "update")
    assert update["diff"] == {"name": ["customer 1", "renamed"], "email": [None, "a@example.com"]}
    prefix = stream.subject.split(".")[0]
    assert first.subject == f"{prefix}.acme.tests%2Emodels%2ECustomer"
    assert messages[-2].subject == f"{prefix}._.tests%2Emodels%2ECustomer"  # no tenant
    status = auditlog.relay_status(engine, "default")
    assert status is not None and (status.relayed, status.pending, status.lag) == (29, 0, 0.0)
    assert status.position == messages[-1].seq


async def test_rolled_back_entries_are_never_published(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    write(Session_, 2)
    with Session_() as session:
        session.add(Customer(id=50, name="rolled back"))
        session.flush()
        session.rollback()
    with Session_.begin() as session:
        session.add(Customer(id=51, name="kept"))
        savepoint = session.begin_nested()
        session.add(Customer(id=52, name="rolled back"))
        session.flush()
        savepoint.rollback()
    await relay_once(engine, stream)
    messages = await read_stream(stream.url, stream.name)
    assert [m.msg_id for m in messages] == committed_ids(engine)
    assert sorted(m.body["object_id"] for m in messages) == ["1", "2", "51"]


@pytest.mark.parametrize("margin", [0.5])
async def test_an_entry_committed_after_newer_ones_were_relayed_is_relayed_later(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream, margin: float
) -> None:
    """Transaction A flushes (its id is older), B commits, the relay runs, then A commits."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer at a time: B cannot commit while A is open")
    write(Session_, 1, start=100)  # the content type committed: B must not wait for A's
    late = Session_()
    late.execute(sa.text("SELECT 1"))  # the transaction starts as an application's would
    late.add(Customer(id=1, name="late"))
    late.flush()
    time.sleep(2 * margin)  # past the margin: only A's open transaction holds the horizon
    write(Session_, 3, start=10)
    try:
        assert await relay_once(engine, stream, margin=margin) == 4
        status = auditlog.relay_status(engine, "default")
        assert status is not None and status.horizon is not None
        late_id = late.execute(
            sa.select(auditlog.AuditLog.id).where(auditlog.AuditLog.object_id == "1")
        ).scalar_one()
        assert status.horizon <= late_id  # held below the open transaction's entry
        late.commit()
    finally:
        late.close()
    assert await relay_once(engine, stream, margin=margin) == 1
    messages = await read_stream(stream.url, stream.name)
    assert sorted(m.msg_id for m in messages) == committed_ids(engine)
    assert messages[-1].msg_id == late_id and len(messages) == 5


async def test_entries_acknowledged_but_not_recorded_are_not_sent_again_after_the_dup_window(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    """A relay killed between the broker's ack and its own commit, restarted after the stream's
    duplicate window: the messages already in the stream are recorded, not published again."""
    await add_stream(
        stream.url, stream.name, [stream.subject.split(".")[0] + ".>"], duplicate_window=1.0
    )
    write(Session_, 10)
    source = RelaySource(engine)
    source.start()
    async with JetStreamSink(stream.url, stream=stream.name, subject=stream.subject) as sink:
        first = source.read()[:6]
        position = await sink.send(first)  # acknowledged by the broker; never recorded
        assert position is not None
        source.record([e.id for e in first[:2]], position - 4)  # only the first two recorded
    await asyncio.sleep(1.5)  # the duplicate window is over
    assert await relay_once(engine, stream) == 4
    messages = await read_stream(stream.url, stream.name)
    assert [m.msg_id for m in messages] == committed_ids(engine)


async def test_a_message_the_stream_refuses_fails_the_batch_and_nothing_is_recorded(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    """JetStream answers a message it does not store with an error: the batch fails with the
    stream's reason, and no entry of it is recorded as relayed (the relay sends it again)."""
    await add_stream(stream.url, stream.name, [stream.subject.split(".")[0] + ".>"])
    write(Session_, 3)
    source = RelaySource(engine)
    source.start()
    async with JetStreamSink(stream.url, stream=stream.name, subject=stream.subject) as sink:
        batch = source.read()
        await delete_stream(stream.url, stream.name)  # nothing answers the subjects any more
        with pytest.raises(ConnectionError, match="no JetStream stream answers"):
            await sink.send(batch)
        await add_stream(
            stream.url, stream.name, [stream.subject.split(".")[0] + ".>"], max_msg_size=64
        )
        with pytest.raises(ConnectionError, match=r"JetStream refused a message: .*size"):
            await sink.send(batch)
        with pytest.raises(ConnectionError, match="JetStream refused"):
            await run_relay(source, sink, once=True, retry=0.01, retries=2)
    status = auditlog.relay_status(engine, "default")
    assert status is not None and (status.relayed, status.pending) == (0, 3)
    assert await read_stream(stream.url, stream.name) == []


def test_committed_entries_yields_a_batch_again_when_its_loop_body_fails(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    write(Session_, 5)
    seen: list[str] = []

    def deliver() -> None:
        for batch in committed_entries(engine, name="webhook", batch_size=2):
            seen.extend(e.id for e in batch)
            if len(seen) == 4:
                raise RuntimeError("the webhook is down")

    with pytest.raises(RuntimeError):
        deliver()
    again = [e.id for batch in committed_entries(engine, name="webhook") for e in batch]
    assert again == [*seen[2:], committed_ids(engine)[-1]]  # the failed batch, then the rest
    assert list(committed_entries(engine, name="webhook")) == []
    other = [e.id for batch in committed_entries(engine, name="lake") for e in batch]
    assert other == committed_ids(engine)  # each name has its own position


def test_subject_tokens_are_safe_and_reversible() -> None:
    from urllib.parse import unquote

    for value in ["acme", "a.b c*>", "%41", "_", "~", "ünï", "6f1c2a9e-0c4b", "x\ty"]:
        token = subject_token(value)
        assert token and not set(token) & set(". *>\t") and unquote(token) == value
    assert (subject_token(None), subject_token(""), subject_token("_")) == ("_", "~", "%5F")


def test_relay_command_and_status(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    write(Session_, 12)
    done = run(stream.args(engine, "--once", "--batch", "5"))
    assert done.returncode == 0, done.stderr
    assert "relayed 12 entries" in done.stdout
    assert "12 relayed" in done.stderr and "0 pending, lag 0.0 s" in done.stderr
    write(Session_, 2, start=50)
    url = engine.url.render_as_string(hide_password=False)
    status = run([*COMMAND, "--database-url", url, "--status", "--json"])
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["name"], shown["relayed"], shown["pending"]) == ("default", 12, 2)
    assert shown["lag"] > 0 and shown["oldest_pending"].endswith("Z")
    text = run([*COMMAND, "--database-url", url, "--status"])
    assert "pending:      2" in text.stdout and "relayed:      12" in text.stdout
    never = run([*COMMAND, "--database-url", url, "--status", "--name", "other"])
    assert never.returncode == 1 and "relay 'other' has never run" in never.stderr
    messages = asyncio.run(read_stream(stream.url, stream.name))
    assert len(messages) == 12


def test_relay_command_refuses_a_stream_that_does_not_hold_the_subjects(
    engine: Engine, stream: Stream
) -> None:
    asyncio.run(add_stream(stream.url, stream.name, [stream.name.lower() + ".other"]))
    done = run(stream.args(engine, "--once"))
    assert done.returncode == 1 and f"stream {stream.name!r} holds" in done.stderr


@pytest.mark.parametrize(
    ("more", "status", "message"),
    [
        (["--subject", "audit.{tenant}.{modle}"], 2, "unknown placeholder {modle}"),
        (["--subject", "audit..{tenant}"], 2, "is not a subject token"),
        (["--subject", "audit.*.{tenant}"], 2, "is not a subject token"),
        (["--nats", "127.0.0.1:4222"], 2, "is not a NATS URL"),
        (["--nats", "nats://127.0.0.1:1"], 1, "cannot connect to NATS at nats://127.0.0.1:1"),
        (["--stream", "a.b"], 2, "stream name 'a.b'"),
        (["--batch", "0"], 2, "not a number of entries"),
    ],
)
def test_relay_command_names_what_is_wrong(
    engine: Engine, stream: Stream, more: list[str], status: int, message: str
) -> None:
    done = run([*stream.args(engine), "--once", *more])
    assert done.returncode == status, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_relay_command_refuses_a_bad_database_url(stream: Stream) -> None:
    done = run([*stream.args(sa.create_engine("sqlite://")), "--database-url", "nope://x"])
    assert done.returncode == 2 and "--database-url" in done.stderr
