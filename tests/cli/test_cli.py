"""The ``auditlog`` command, run for real: subprocesses, real servers on free ports, real HTTP."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from ulid import ULID

import auditlog
from auditlog.cli.demo import TENANTS
from auditlog.cli.demo import Base as DemoBase

from ..helpers import AUTH_A, AUTH_B, TENANT_A, TENANT_B, assert_history_page, seed_history
from ..helpers import entries as auditlog_entries
from ..models import Customer

COMMAND = [sys.executable, "-m", "auditlog"]
SERVING = re.compile(r"Serving GET /history/ at (?P<base>http://\S+)/history/")
ACME, GLOBEX = TENANTS


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITLOG_")}
    env.update(extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=_env(**env), timeout=120
    )


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@dataclass
class Server:
    base: str
    lines: list[str] = field(default_factory=list)


@contextmanager
def serving(*args: str, last_line: str = "Serving", **env: str) -> Iterator[Server]:
    """Start ``auditlog ARGS`` on a free port, wait until it answers, stop it afterwards."""
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [*COMMAND, *args, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=_env(**env),
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        def errors() -> str:
            stderr.seek(0)
            return stderr.read()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            server = _wait_for_banner(proc, lines, last_line, errors)
            _wait_until_answering(server.base)
            yield server
        finally:
            proc.terminate()
            status = proc.wait(timeout=30)
            reader.join(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
        assert status == 0, errors()
        assert "Traceback" not in errors()


def _wait_for_banner(
    proc: subprocess.Popen[str],
    lines: queue.Queue[str | None],
    last_line: str,
    errors: Callable[[], str],
) -> Server:
    server: Server | None = None
    collected: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"the server exited with {proc.wait()}: {errors()}")
        collected.append(line)
        match = SERVING.search(line)
        if match:
            server = Server(match["base"], collected)
        if server is not None and last_line in line:
            return server
    pytest.fail(f"no banner in time; got {collected}")


def _wait_until_answering(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/history/", timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- demo ---------------------------------------------------------------------------------------


def _token(server: Server) -> str:
    (line,) = [line for line in server.lines if line.startswith("Token")]
    return line.rsplit(": ", 1)[1]


def test_demo_serves_the_sample_history_with_the_printed_token() -> None:
    with serving("demo", last_line="curl") as server:
        token = _token(server)
        assert f"Viewer: {server.base}/history/view/ (sign in with the token)" in server.lines
        curl = server.lines[-1].strip()
        url = f"{server.base}/history/?action_type=create"
        assert curl == f'curl -H "Authorization: Bearer {token}" "{url}"'
        auth = {"Authorization": f"Bearer {token}"}

        created = httpx.get(url, headers=auth)
        assert created.status_code == 200
        body = created.json()
        assert_history_page(body)
        assert body["count"] == 4
        assert {e["action_type"] for e in body["results"]} == {"create"}
        assert {e["tenant_id"] for e in body["results"]} == {ACME.id}
        assert {e["before_state"] is None for e in body["results"]} == {True}

        everything = httpx.get(f"{server.base}/history/?page_size=100", headers=auth).json()
        entries = everything["results"]
        assert {e["action_type"] for e in entries} == {"create", "update", "delete", "access"}
        assert {e["user_id"] for e in entries} == {*ACME.users, None}
        assert {e["ip_address"] for e in entries} == {*ACME.addresses, None}
        assert {e["tenant_id"] for e in entries} == {ACME.id}

        page = httpx.get(f"{server.base}/history/?page_size=3&page=2", headers=auth).json()
        assert (page["current_page"], page["previous_page"], len(page["results"])) == (2, 1, 3)

        other = httpx.get(f"{server.base}/history/?tenant_id={GLOBEX.id}", headers=auth).json()
        assert other["results"] == []

        missing = httpx.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(url, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401

        bad = httpx.get(f"{server.base}/history/?action_type=created", headers=auth)
        assert (bad.status_code, bad.json()["parameter"]) == (400, "action_type")
    database = re.search(r"in sqlite:///(\S+)$", server.lines[0])
    assert database is not None
    assert not Path(database[1]).parent.exists()  # the temporary database is removed on exit


def test_demo_writes_through_the_library_into_a_given_database(engine: Engine) -> None:
    try:
        with serving(
            "demo", "--token", "demo-token", "--database-url", url_of(engine), last_line="curl"
        ) as server:
            assert _token(server) == "demo-token"
            auth = {"Authorization": "Bearer demo-token"}
            body = httpx.get(f"{server.base}/history/?action_type=delete", headers=auth).json()
            assert body["count"] == 1
            assert body["results"][0]["after_state"] is None
            assert body["results"][0]["before_state"]["amount"] == "1200.50"
        with Session(engine) as session:
            for tenant in TENANTS:
                page = auditlog.query_history(session, tenant_id=tenant.id, page_size=100)
                assert page.count == 9
                assert len({e.user_id for e in page.results}) == 3  # two users and a job
    finally:
        DemoBase.metadata.drop_all(engine)


def test_demo_refuses_a_token_that_cannot_be_sent() -> None:
    result = run("demo", "--token", "not a token")
    assert result.returncode == 2
    assert "--token" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("demo", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


# --- serve --------------------------------------------------------------------------------------


def test_serve_maps_configured_tokens_to_tenants(engine: Engine) -> None:
    seed_history(engine)
    tokens = f"token-a={TENANT_A}, token-b={TENANT_B}"
    with serving("serve", "--database-url", url_of(engine), AUDITLOG_TOKENS=tokens) as server:
        a = httpx.get(f"{server.base}/history/", headers=AUTH_A).json()
        b = httpx.get(f"{server.base}/history/", headers=AUTH_B).json()
        assert_history_page(a)
        assert (a["count"], b["count"]) == (5, 2)
        assert {e["tenant_id"] for e in a["results"]} == {TENANT_A}
        assert {e["tenant_id"] for e in b["results"]} == {TENANT_B}
        sneaky = httpx.get(
            f"{server.base}/history/", params={"tenant_id": TENANT_B}, headers=AUTH_A
        )
        assert (sneaky.status_code, sneaky.json()["count"]) == (200, 0)
        denied = httpx.get(f"{server.base}/history/")
        assert (denied.status_code, denied.headers["www-authenticate"]) == (401, "Bearer")
        bad = httpx.get(f"{server.base}/history/?page_size=0", headers=AUTH_A)
        assert (bad.status_code, bad.json()["parameter"]) == (400, "page_size")


def test_serve_counts_exactly_with_exact_count(engine: Engine) -> None:
    """Past 10,000 matching entries a page's count is the database's estimate, unless the
    server runs with --exact-count; a client can never choose."""
    seed_history(engine)
    template = auditlog_entries(engine, tenant_id=TENANT_A)[0]
    log = auditlog.AuditLog.__table__
    start = template.timestamp
    rows = [
        {
            "id": str(ULID.from_datetime(start + dt.timedelta(milliseconds=i + 1))),
            "tenant_id": TENANT_A,
            "action_type": "access",
            "timestamp": start + dt.timedelta(milliseconds=i + 1),
            "user_agent": "",
            "object_id": str(i),
            "content_type": template.content_type,
        }
        for i in range(10_000)
    ]
    with engine.begin() as conn:
        conn.execute(log.insert(), rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE audit_log")
    tokens = f"token-a={TENANT_A}"
    url = url_of(engine)
    with serving("serve", "--database-url", url, AUDITLOG_TOKENS=tokens) as server:
        body = httpx.get(f"{server.base}/history/", headers=AUTH_A).json()
        assert body["count_exact"] is (engine.dialect.name == "sqlite")  # SQLite: always exact
        asked = httpx.get(f"{server.base}/history/?count_limit=100000", headers=AUTH_A)
        assert (asked.status_code, asked.json()["parameter"]) == (400, "count_limit")
    exact = ("serve", "--database-url", url, "--exact-count")
    with serving(*exact, AUDITLOG_TOKENS=tokens) as server:
        body = httpx.get(f"{server.base}/history/", headers=AUTH_A).json()
        assert (body["count"], body["count_exact"]) == (10_005, True)


def test_serve_reads_a_tokens_file(engine: Engine, tmp_path: Path) -> None:
    seed_history(engine)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# ops team\ntoken-b = {TENANT_B}\n\n", encoding="utf-8")
    url = url_of(engine)
    with serving("serve", "--database-url", url, "--tokens-file", str(tokens)) as server:
        b = httpx.get(f"{server.base}/history/?action_type=create", headers=AUTH_B).json()
        assert b["count"] == 2
        assert httpx.get(f"{server.base}/history/", headers=AUTH_A).status_code == 401


@pytest.mark.parametrize(
    ("tokens", "message"),
    [("", "no tokens"), ("token-a", "expected token=tenant_id"), ("a b=t", "a token is")],
)
def test_serve_needs_well_formed_tokens(tmp_path: Path, tokens: str, message: str) -> None:
    result = run("serve", "--database-url", "sqlite://", AUDITLOG_TOKENS=tokens)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- history ------------------------------------------------------------------------------------


def test_history_prints_the_json_page(engine: Engine) -> None:
    seed_history(engine)
    result = run(
        "history", "--database-url", url_of(engine), "--tenant-id", TENANT_A,
        "--action-type", "create,delete", "--page-size", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert_history_page(printed)
    with Session(engine) as session:
        expected = auditlog.query_history(
            session, tenant_id=TENANT_A, action_type="create,delete", page_size=3
        )
    assert printed == expected.model_dump(mode="json")
    assert (printed["count"], printed["total_pages"], printed["next_page"]) == (4, 2, 2)


def test_history_filters(engine: Engine) -> None:
    seed_history(engine)
    url = url_of(engine)
    by_user = json.loads(run("history", "--database-url", url, "--user-id", "carol").stdout)
    assert {e["tenant_id"] for e in by_user["results"]} == {TENANT_B}
    by_ip = json.loads(run("history", "--database-url", url, "--ip-address", "2001:db8::1").stdout)
    assert by_ip["count"] == 2
    by_object = run("history", "--database-url", url, "--object-id", "1", "--page", "2",
                    "--page-size", "1")  # fmt: skip
    page = json.loads(by_object.stdout)
    assert (page["current_page"], page["results"][0]["action_type"]) == (2, "create")
    everything = json.loads(run("history", "--database-url", url, "--page-size", "100").stdout)
    assert everything["count"] == 7  # no --tenant-id: every tenant


def test_history_reads_the_url_from_the_environment(engine: Engine) -> None:
    seed_history(engine)
    result = run("history", "--user-id", "bob", AUDITLOG_DATABASE_URL=url_of(engine))
    assert json.loads(result.stdout)["count"] == 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--page", "0"], "--page"),
        (["--page-size", "5000"], "--page-size"),
        (["--action-type", "create,erase"], "--action-type"),
        (["--ip-address", "10.0.0"], "--ip-address"),
        (["--since", "last week"], "--since"),
        (["--page", "two"], "--page"),
    ],
)
def test_history_names_a_bad_filter(options: list[str], named: str) -> None:
    result = run("history", "--database-url", "sqlite://", *options)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("not a url", 2, "is not a database URL"),
        ("nosuchdb://host/db", 2, "cannot use nosuchdb://host/db"),
        ("postgresql+psycopg://nobody:secret@127.0.0.1:9/none", 1, "cannot use the database"),
        ("mariadb+pymysql://nobody:secret@127.0.0.1:9/none", 1, "cannot use the database"),
        ("sqlite:///does/not/exist.sqlite3", 1, "no SQLite database file"),
    ],
)
def test_history_explains_an_unusable_database(url: str, status: int, message: str) -> None:
    result = run("history", "--database-url", url)
    assert result.returncode == status
    assert message in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_history_explains_a_missing_audit_table(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    empty = sa.create_engine(f"sqlite:///{path}")
    with empty.begin() as connection:
        connection.execute(sa.text("CREATE TABLE customer (id INTEGER PRIMARY KEY)"))
    empty.dispose()
    result = run("history", "--database-url", f"sqlite:///{path}")
    assert result.returncode == 1
    assert "no audit_log table" in result.stderr
    assert "Traceback" not in result.stderr


def test_history_needs_a_database_url() -> None:
    result = run("history")
    assert result.returncode == 2
    assert "--database-url is required" in result.stderr


# --- the command itself -------------------------------------------------------------------------


def test_console_script_and_module_agree() -> None:
    script = Path(sys.executable).with_name("auditlog")
    assert script.exists()
    via_script = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    via_module = run("--version")
    assert via_script.stdout == via_module.stdout == f"auditlog {auditlog.__version__}\n"


def test_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "serve", "history"):
        assert command in result.stdout
    assert run().returncode == 2


@pytest.mark.parametrize("source", ["file", "environment"])
def test_demo_takes_its_token_from_a_file_or_the_environment(tmp_path: Path, source: str) -> None:
    """Options are visible to every user in the process list; files and variables are not."""
    token = "padded+token/=="
    if source == "file":
        secret = tmp_path / "token"
        secret.write_text(token + "\n", encoding="utf-8")
        args, env = ["--token-file", str(secret)], {}
    else:
        args, env = [], {"AUDITLOG_DEMO_TOKEN": token}
    with serving("demo", *args, last_line="curl", **env) as server:
        assert _token(server) == token
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.base}/history/", headers=auth).status_code == 200


def test_serve_accepts_tokens_with_padding(engine: Engine) -> None:
    seed_history(engine)
    tokens = f"abc/+def== = {TENANT_B}"
    with serving("serve", "--database-url", url_of(engine), AUDITLOG_TOKENS=tokens) as server:
        auth = {"Authorization": "Bearer abc/+def=="}
        assert httpx.get(f"{server.base}/history/", headers=auth).json()["count"] == 2


def test_serve_closes_idle_connections(engine: Engine) -> None:
    seed_history(engine)
    tokens = f"token-a={TENANT_A}"
    url = url_of(engine)
    with serving(
        "serve", "--database-url", url, "--idle-timeout", "0.5", AUDITLOG_TOKENS=tokens
    ) as server:
        host, port = server.base.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            idle.sendall(b"GET /hist")  # a request that never ends
            assert idle.recv(1024) == b""  # closed by the server, not by our timeout
        assert httpx.get(f"{server.base}/history/", headers=AUTH_A).status_code == 200


def test_history_escapes_what_a_terminal_would_act_on(engine: Engine) -> None:
    auditlog.register(Customer)
    maker = sessionmaker(engine)
    auditlog.enable(maker)
    with maker.begin() as session:
        session.add(Customer(id=5, name="evil\u202egnp.exe\x85\x1b[2J"))
    result = run("history", "--database-url", url_of(engine))
    assert result.returncode == 0, result.stderr
    assert "\u202e" not in result.stdout and "\x85" not in result.stdout
    assert "\x1b" not in result.stdout
    name = json.loads(result.stdout)["results"][0]["after_state"]["name"]
    assert name == "evil\u202egnp.exe\x85\x1b[2J"  # the JSON still holds the value itself


def test_history_prints_an_objects_state_as_of_a_moment(engine: Engine) -> None:
    seed_history(engine)
    url = url_of(engine)
    created = auditlog_entries(engine, object_id="1", tenant_id=TENANT_A)[0]
    now = run("history", "--database-url", url, "--object-id", "1", "--tenant-id", TENANT_A,
              "--as-of", "2999-01-01T00:00:00")  # fmt: skip
    assert now.returncode == 0, now.stderr
    assert json.loads(now.stdout)["state"]["name"] == "Ada"
    then = run("history", "--database-url", url, "--object-id", "1", "--as-of", created.id,
               "--content-type", "tests.models.Customer", "--tenant-id", TENANT_A)  # fmt: skip
    body = json.loads(then.stdout)
    assert (body["state"]["name"], body["entry_id"]) == ("customer 1", created.id)
    alone = run("history", "--database-url", url, "--as-of", created.id)
    assert (alone.returncode, "--as-of needs --object-id" in alone.stderr) == (2, True)
    bad = run("history", "--database-url", url, "--object-id", "1", "--as-of", "yesterday")
    assert bad.returncode == 2 and "--as-of" in bad.stderr
    unknown = run("history", "--database-url", url, "--object-id", "1", "--as-of", created.id,
                  "--content-type", "shop.Basket")  # fmt: skip
    assert unknown.returncode == 2
    assert "--content-type: no model is named 'shop.Basket'" in unknown.stderr


def test_history_filters_by_model_name_and_reads_on_with_a_cursor(engine: Engine) -> None:
    seed_history(engine)
    url = url_of(engine)
    first = run("history", "--database-url", url, "--content-type", "tests.models.Customer",
                "--tenant-id", TENANT_A, "--page-size", "3")  # fmt: skip
    page = json.loads(first.stdout)
    assert page["count"] == 5 and page["next_cursor"]
    rest = run("history", "--database-url", url, "--tenant-id", TENANT_A,
               "--cursor", page["next_cursor"])  # fmt: skip
    assert len(json.loads(rest.stdout)["results"]) == 2
    unknown = run("history", "--database-url", url, "--content-type", "shop.Basket")
    assert unknown.returncode == 2 and "--content-type: no model is named" in unknown.stderr


@pytest.mark.parametrize("form", ["jsonl", "csv", "parquet"])
def test_export_writes_an_archive_that_verifies_and_imports(
    engine: Engine, tmp_path: Path, form: str
) -> None:
    seed_history(engine)
    sealed = run("seal", "--database-url", url_of(engine))
    assert sealed.returncode == 0, sealed.stderr
    head = sealed.stdout.strip()
    archive = tmp_path / f"out.{form}"
    done = run("export", "--database-url", url_of(engine), "--before", "2999-01-01",
               "--format", form, "--output", str(archive), "--page-size", "2")  # fmt: skip
    assert done.returncode == 2 and "--before" in done.stderr and "future" in done.stderr
    done = run("export", "--database-url", url_of(engine), "--format", form,
               "--output", str(archive), "--page-size", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 7 entries (7 sealed) and 1 seals" in done.stderr
    checked = run("verify", "--archive", str(archive), "--head", head)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("intact; 7 entries in 1 seals")
    target = f"sqlite:///{tmp_path / 'imported.sqlite3'}"
    imported = run("import", str(archive), "--database-url", target)
    assert imported.returncode == 0, imported.stderr
    assert "imported 7 entries (0 already there), 1 seals" in imported.stdout
    again = run("verify", "--database-url", target, "--head", head)
    assert again.returncode == 0, again.stdout
    with Session(engine) as session:
        expected = auditlog.query_history(session, tenant_id=TENANT_B, page_size=100)
    listed = run("history", "--database-url", target, "--tenant-id", TENANT_B)
    assert [r["id"] for r in json.loads(listed.stdout)["results"]] == [
        e.id for e in expected.results
    ]


def test_export_to_stdout_and_a_tenants_archive(engine: Engine, tmp_path: Path) -> None:
    seed_history(engine)
    shown = run("export", "--database-url", url_of(engine), "--tenant-id", TENANT_B)
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["record"] for r in records] == ["header", "entry", "entry", "trailer"]
    assert records[0]["tenant_id"] == TENANT_B
    archive = tmp_path / "b.csv"
    archive.write_text(run("export", "--database-url", url_of(engine), "--format", "csv").stdout)
    rows = list(csv.DictReader(io.StringIO(archive.read_text())))
    assert [r["record"] for r in rows].count("entry") == 7
    assert run("verify", "--archive", str(archive)).returncode == 0


def test_export_import_and_verify_archive_name_bad_arguments(
    engine: Engine, tmp_path: Path
) -> None:
    seed_history(engine)
    url = url_of(engine)
    cases = [
        (["export", "--database-url", url, "--before", "yesterday"], 2, "--before"),
        (["export", "--database-url", url, "--format", "xml"], 2, "--format"),
        (["export", "--database-url", url, "--format", "parquet"], 2, "needs --output"),
        (["export", "--database-url", url, "--output", str(tmp_path / "no" / "f.jsonl")], 1,
         "cannot write"),
        (["verify", "--archive", str(tmp_path / "missing.jsonl")], 2, "no archive file"),
        (["verify", "--archive", __file__], 1, "is not an auditlog archive"),
        (["verify", "--archive", __file__, "--head", "7"], 2, "--head"),
        (["import", str(tmp_path / "missing.jsonl"), "--database-url", url], 2, "no archive"),
        (["export", "--database-url", url, "--before", "9999-12-31T23:59:59-05:00"], 2,
         "--before 9999-12-31T23:59:59.999000+00:00 is in the future"),
        (["prune", "--database-url", url, "--before", "9999-12-31T23:59:59-05:00"], 2,
         "is in the future"),
        (["prune", "--database-url", url, "--before", "2020-01-01", "--tenant="], 2,
         "--tenant: must not be empty"),
        (["seal", "--database-url", url, "--late", str(10**15)], 2, "--late: must be a number"),
        (["verify", "--database-url", url, "--late", str(10**15)], 2, "--late: must be"),
        (["verify", "--archive", __file__, "--database-url", "sqlite://"], 2,
         "--database-url does not apply to --archive"),
    ]  # fmt: skip
    for arguments, status, message in cases:
        done = run(*arguments)
        assert (done.returncode, message in done.stderr) == (status, True), (arguments, done)


def test_prune_and_export_before_the_earliest_time_remove_and_write_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    seed_history(engine)
    url = url_of(engine)
    for before in ("0001-01-01T00:00:00+05:00", "1900-01-01"):
        archive = tmp_path / "empty.jsonl"
        done = run("export", "--database-url", url, "--before", before, "--output", str(archive))
        assert done.returncode == 0 and "exported 0 entries" in done.stderr, done
        pruned = run("prune", "--database-url", url, "--before", before)
        assert pruned.returncode == 0 and pruned.stdout.startswith("pruned 0 entries"), pruned
    assert len(auditlog_entries(engine)) == 7


def test_verify_archive_names_an_edit_and_import_refuses_it(engine: Engine, tmp_path: Path) -> None:
    seed_history(engine)
    run("seal", "--database-url", url_of(engine))
    archive = tmp_path / "a.jsonl"
    assert run("export", "--database-url", url_of(engine), "--output", str(archive)).returncode == 0
    text = archive.read_text(encoding="utf-8")
    archive.write_text(text.replace('"customer 2"', '"customer 9"', 1), encoding="utf-8")
    checked = run("verify", "--archive", str(archive), "--json")
    assert checked.returncode == 1
    kinds = {p["kind"] for p in json.loads(checked.stdout)["problems"]}
    assert kinds == {"entry_changed", "archive_changed"}
    target = f"sqlite:///{tmp_path / 'imported.sqlite3'}"
    refused = run("import", str(archive), "--database-url", target)
    assert refused.returncode == 1 and "refused, nothing imported" in refused.stderr


def test_export_shows_its_progress_on_a_terminal(engine: Engine, tmp_path: Path) -> None:
    import pty

    seed_history(engine)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [*COMMAND, "export", "--database-url", url_of(engine), "--output",
             str(tmp_path / "out.jsonl")],
            stderr=follower, stdout=subprocess.PIPE, env=_env(), timeout=120, check=False,
        )  # fmt: skip
        shown = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 0
    assert "exported 7 of 7" in shown
