"""``auditlog seal`` and ``auditlog verify``, run as commands on every backend."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog

from ..helpers import entries
from ..models import Tag
from .test_cli import run, url_of


def _write(maker: sessionmaker[Session], n: int) -> None:
    auditlog.register(Tag)
    for i in range(1, n + 1):
        with maker.begin() as session:
            session.add(Tag(id=i, label=f"tag {i}"))


def test_seal_prints_the_head_and_verify_passes_with_it(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_, 3)
    sealed = run("seal", "--database-url", url_of(engine), "--batch", "2")
    assert sealed.returncode == 0, sealed.stderr
    head = sealed.stdout.strip()
    assert head.startswith("2:") and len(head) == 66
    assert "sealed 3 entries in 2 seals" in sealed.stderr
    checked = run("verify", "--database-url", url_of(engine), "--head", head)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("intact; 3 entries in 2 seals, 0 not sealed yet")


def test_verify_names_each_problem_and_exits_1(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_, 2)
    head = run("seal", "--database-url", url_of(engine)).stdout.strip()
    changed = entries(engine)[0].id
    with engine.begin() as conn:
        table = AuditLog.__table__
        conn.execute(sa.update(table).where(table.c.id == changed).values(user_id="mallory"))
    checked = run("verify", "--database-url", url_of(engine), "--head", head)
    assert checked.returncode == 1
    assert f"entry_changed: entry {changed} of seal 1 is not as sealed" in checked.stdout
    assert "NOT intact: 1 problems" in checked.stdout
    as_json = run("verify", "--database-url", url_of(engine), "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["intact"] is False and report["head"] == head
    assert report["problems"] == [
        {
            "kind": "entry_changed",
            "detail": f"entry {changed} of seal 1 is not as sealed",
            "entry_id": changed,
            "seal": 1,
        }
    ]


def test_a_malformed_head_is_a_usage_error(engine: Engine) -> None:
    checked = run("verify", "--database-url", url_of(engine), "--head", "latest")
    assert checked.returncode == 2
    assert "--head: 'latest' is not a published head" in checked.stderr
    bad_batch = run("seal", "--database-url", url_of(engine), "--batch", "0")
    assert bad_batch.returncode == 2 and "--batch" in bad_batch.stderr
    bad_late = run("seal", "--database-url", url_of(engine), "--late", "-5")
    assert bad_late.returncode == 2
    assert "--late: must be a number of minutes from 0 to 5,270,400, not -5" in bad_late.stderr


def test_late_sets_how_old_an_unsealed_entry_may_be_for_seal_and_verify(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_, 2)
    run("seal", "--database-url", url_of(engine))
    newest = entries(engine)[-1].timestamp
    with engine.begin() as conn:  # an entry of a transaction that ran for two hours
        old = newest - dt.timedelta(hours=2)
        conn.execute(
            sa.insert(AuditLog.__table__).values(
                id=str(ULID.from_datetime(old)),
                action_type="create",
                timestamp=old,
                user_agent="",
                object_id="99",
                content_type=entries(engine)[0].content_type,
            )
        )
    checked = run("verify", "--database-url", url_of(engine))
    assert checked.returncode == 1 and "entry_inserted" in checked.stdout
    kept = run("seal", "--database-url", url_of(engine))
    assert "sealed 0 entries" in kept.stderr
    allowed = run("seal", "--database-url", url_of(engine), "--late", "180")
    assert "sealed 1 entries in 1 seals" in allowed.stderr
    checked = run("verify", "--database-url", url_of(engine), "--late", "180")
    assert checked.returncode == 0, checked.stdout
