"""A three-node JetStream cluster on loopback ports, a stream with three replicas, one node killed
while the relay runs and applications write: nothing is lost, nothing doubled."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..backends import IN_CI
from ..helpers import entries
from .conftest import Stream, delete_stream, read_stream, run
from .writers import Writers

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def _ready(urls: list[str]) -> bool:
    import nats

    try:
        nc = await nats.connect(servers=urls, connect_timeout=1, max_reconnect_attempts=1)
    except Exception:
        return False
    try:
        await nc.jetstream(timeout=1).account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


async def replicas(urls: list[str], name: str) -> int:
    import nats

    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream(timeout=10).stream_info(name)
        return int(info.config.num_replicas or 1)
    finally:
        await nc.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """Three nats-server processes clustered on free loopback ports, JetStream on each."""
    if not Path(NATS_SERVER).exists():
        if IN_CI:
            pytest.fail("nats-server is not installed", pytrace=False)
        pytest.skip("nats-server is not installed")
    ports = free_ports(6)
    clients, routes = ports[:3], ports[3:]
    servers = []
    for n in range(3):
        others = ",".join(f"nats://127.0.0.1:{routes[m]}" for m in range(3) if m != n)
        args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(clients[n]), "-js",
                "-sd", str(tmp_path / f"n{n}"), "--server_name", f"n{n}",
                "--cluster_name", "auditlog-test", "--cluster", f"nats://127.0.0.1:{routes[n]}",
                "--routes", others]  # fmt: skip
        servers.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls = [f"nats://127.0.0.1:{p}" for p in clients]
    try:
        deadline = time.monotonic() + 30
        while not asyncio.run(_ready(urls)):
            if time.monotonic() > deadline:
                pytest.fail("the three-node NATS cluster did not elect a JetStream leader")
            time.sleep(0.5)
        yield urls, servers
    finally:
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            server.wait()


def test_a_stream_with_three_replicas_loses_nothing_when_a_node_dies(
    engine: Engine,
    Session_: sessionmaker[Session],
    cluster: tuple[list[str], list[subprocess.Popen[bytes]]],
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the cluster is exercised on PostgreSQL")
    urls, servers = cluster
    stream = Stream(",".join(urls), "AUDITLOG_CLUSTER", "cluster.{tenant}.{model}")
    args = stream.args(engine, "--replicas", "3", "--batch", "50", "--interval", "1")
    with Writers(Session_) as writers:
        relay = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        before = auditlog.relay_status(engine, "default")
        servers[0].send_signal(signal.SIGKILL)  # the node the relay connected to first
        servers[0].wait()
        deadline = time.monotonic() + 40  # unacknowledged publishes time out, then go again
        while time.monotonic() < deadline:
            time.sleep(1)
            now = auditlog.relay_status(engine, "default")
            assert before is not None and now is not None
            if now.relayed > before.relayed + 100:
                break
        time.sleep(1)
    relay.send_signal(signal.SIGTERM)
    _, err = relay.communicate(timeout=60)
    assert relay.returncode == 0, err.decode()
    after = auditlog.relay_status(engine, "default")
    assert before is not None and after is not None
    assert after.relayed > before.relayed + 100  # it went on relaying through the failover
    drained = run([*args, "--once"])
    assert drained.returncode == 0, drained.stderr
    survivors = urls[1:]
    messages = _settled(lambda: read_stream(survivors, stream.name))
    ids = [m.msg_id for m in messages]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert sorted(ids) == sorted(e.id for e in entries(engine))
    assert len(ids) == writers.committed and len(ids) > 100
    assert _settled(lambda: replicas(survivors, stream.name)) == 3
    _settled(lambda: delete_stream(survivors, stream.name))


def _settled(call: Any) -> Any:
    """``call()`` run, again while the cluster that lost a node answers with timeouts (its
    JetStream leaders are still being elected), for up to 30 seconds."""
    import nats.errors

    deadline = time.monotonic() + 30
    while True:
        try:
            return asyncio.run(call())
        except nats.errors.TimeoutError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
