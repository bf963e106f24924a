"""``auditlog erase``, run as a command on every backend: an actor or an object erased, the
log still verified, the erasure recorded; bad arguments and a missing confirmation refused."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import auditlog
from auditlog.integrity import erasure_table

from ..helpers import entries
from ..models import Customer
from .test_cli import COMMAND, _env, run, url_of


def _write(maker: sessionmaker[Session]) -> None:
    auditlog.register(Customer)
    for i, user in ((1, "grace"), (2, "ada")):
        with (
            auditlog.audit_context(user_id=user, ip_address="198.51.100.23"),
            maker.begin() as session,
        ):
            session.add(Customer(id=i, name=f"customer {i}"))
    with auditlog.audit_context(user_id="ada"), maker.begin() as session:
        session.get_one(Customer, 1).name = "renamed"


def test_erase_an_actor_keeps_the_log_provable(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_)
    auditlog.seal(engine)
    done = run(
        "erase", "--database-url", url_of(engine), "--user-id", "grace", "--yes",
        "--reason", "request 42", "--erased-by", "dpo",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "erased user_id, ip_address, user_agent, extra of actor 'grace' in 1 entries; erasure "
    )
    assert [e.user_id for e in entries(engine)] == [None, "ada", "ada"]
    report = auditlog.verify(engine)
    assert report.intact and len(report.erased) == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(erasure_table)).one()
    assert (row.kind, row.entries, row.reason, row.erased_by) == ("actor", 1, "request 42", "dpo")
    assert row.id == done.stdout.split()[-1]


def test_erase_an_object_by_model_name_or_id(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_)
    auditlog.seal(engine)
    first = entries(engine)[0]
    done = run(
        "erase", "--database-url", url_of(engine), "--content-type", "tests.models.Customer",
        "--object-id", "1", "--yes",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "of object '1' of tests.models.Customer in 2 entries" in done.stdout
    by_id = run(
        "erase", "--database-url", url_of(engine), "--content-type", str(first.content_type),
        "--object-id", "2", "--yes",
    )  # fmt: skip
    assert by_id.returncode == 0 and " in 1 entries" in by_id.stdout
    assert all(e.before_state is None and e.after_state is None for e in entries(engine))
    assert auditlog.verify(engine).intact


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give --user-id (an actor) or --content-type and --object-id (an object)"),
        (["--user-id", "u", "--object-id", "1"], "give --user-id"),
        (["--object-id", "1"], "an object is named by both --content-type and --object-id"),
        (["--user-id", ""], "--user-id: must not be empty"),
        (
            ["--content-type", "no.such.Model", "--object-id", "1"],
            "content_type: no audited model is named 'no.such.Model'",
        ),
        (
            ["--content-type", "999999", "--object-id", "1"],
            "content_type: no audited model has the id 999999",
        ),
        (["--content-type", "9" * 5000, "--object-id", "1"], "no audited model has the id 999"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_erased(
    engine: Engine, Session_: sessionmaker[Session], arguments: list[str], message: str
) -> None:
    _write(Session_)
    refused = run("erase", "--database-url", url_of(engine), *arguments, "--yes")
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert [e.user_id for e in entries(engine)] == ["grace", "ada", "ada"]


def test_without_yes_it_asks_and_does_nothing_unless_told(
    engine: Engine, Session_: sessionmaker[Session]
) -> None:
    _write(Session_)
    piped = run("erase", "--database-url", url_of(engine), "--user-id", "grace")
    assert piped.returncode == 2
    assert "erasing actor 'grace' cannot be undone: add --yes to go on" in piped.stderr
    assert [e.user_id for e in entries(engine)] == ["grace", "ada", "ada"]
    # on a terminal it asks; anything but yes keeps everything
    script = [*COMMAND, "erase", "--database-url", url_of(engine), "--user-id", "grace"]
    asked = subprocess.run(
        ["script", "-qec", " ".join(f"'{a}'" for a in script), "/dev/null"],
        input="n\n",
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert "Erase actor 'grace' from the audit log for good? [y/N]" in asked.stdout
    assert asked.returncode == 1 and "nothing erased" in asked.stdout
    assert [e.user_id for e in entries(engine)] == ["grace", "ada", "ada"]
