"""A relay killed with SIGKILL again and again while applications write (random rollbacks,
long transactions): afterwards the stream holds every committed entry exactly once, nothing else.

The stream's duplicate window is a tenth of a second, so JetStream's deduplication cannot hide a relay
that would publish an entry twice after a restart: only the relay's own record can.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog

from ..helpers import entries
from .conftest import Stream, add_stream, read_stream, run
from .writers import Writers

KILLS = 12


def test_a_relay_killed_at_random_moments_leaves_every_committed_entry_once(
    engine: Engine, Session_: sessionmaker[Session], stream: Stream
) -> None:
    sqlite = engine.dialect.name == "sqlite"
    margin = "6" if sqlite else "1"  # SQLite: above the writers' 5 s busy timeout
    prefix = stream.subject.split(".")[0]
    asyncio.run(add_stream(stream.url, stream.name, [prefix + ".>"], duplicate_window=0.1))
    args = stream.args(engine, "--batch", "10", "--interval", "1", "--margin", margin)
    rng = random.Random(17)
    kills = 0
    with Writers(Session_, long=0.5 if sqlite else 1.5) as writers:
        time.sleep(0.5)
        while kills < KILLS:
            relay = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.6, 2.0))
            if relay.poll() is not None:
                raise AssertionError(relay.stderr.read().decode() if relay.stderr else "")
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            if relay.stderr:
                relay.stderr.close()
            kills += 1
    assert writers.committed > 100 and writers.rolled_back
    drained = run([*args, "--once"])
    assert drained.returncode == 0, drained.stderr

    messages = asyncio.run(read_stream(stream.url, stream.name))
    ids = [m.msg_id for m in messages]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates == []
    committed = sorted(e.id for e in entries(engine))
    assert sorted(ids) == committed
    assert len(committed) == writers.committed
    assert not {m.body["object_id"] for m in messages} & writers.rolled_back
    status = auditlog.relay_status(engine, "default")
    assert status is not None and status.pending == 0 and status.horizon is not None
