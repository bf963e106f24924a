"""The viewer, in a real browser (Debian's Chromium, driven by Playwright) against a real server.

sign in -> filter -> entry -> timeline, a refused token, values that try to be markup, a
keyboard, a phone's width; and the headers every mount serves it with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect, sync_playwright
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from ulid import ULID

import auditlog
from auditlog import AuditLog
from auditlog.integrations.http import Principal, token_authenticator
from auditlog.integrations.server import make_wsgi_app

from ..backends import IN_CI
from ..helpers import TENANT_A, TOKENS, seed_history
from ..models import Customer, Membership

CHROMIUM = os.environ.get("AUDITLOG_TEST_CHROMIUM", "/usr/bin/chromium")
#: Chromium as root in a sandbox-less container, with nothing reaching out to the network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
MARKUP = [
    "<script>alert('name')</script>",
    '"><img src=x onerror=alert(1)>',
    "<b onmouseover=alert(2)>bold</b>",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site(engine: Engine) -> Iterator[str]:
    """The history of ``seed_history`` plus entries whose values look like markup, served by a
    real HTTP server on a free port."""
    seed_history(engine)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    context = auditlog.audit_context(tenant_id=TENANT_A, user_id=MARKUP[1], user_agent=MARKUP[2])
    with context, maker.begin() as session:
        session.add(Customer(id=20, tenant_id=TENANT_A, name=MARKUP[0], email=MARKUP[1]))
    app = make_wsgi_app(maker, token_authenticator(TOKENS))
    server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.problems = []
    tab.on("pageerror", lambda error: tab.problems.append(str(error)))
    tab.on(
        "dialog",
        lambda dialog: (tab.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()),
    )
    try:
        yield tab
    finally:
        context.close()


def sign_in(page: Any, site: str, token: str = "token-a") -> None:
    page.goto(f"{site}/history/view/")
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_filter_entry_and_timeline(page: Any, site: str) -> None:
    sign_in(page, site)
    rows = page.locator("table.entries tbody tr")
    expect(rows).to_have_count(6)  # tenant A's entries only
    assert "token-a" not in page.url  # the token never goes in a URL
    page.get_by_label("Action", exact=True).select_option("update")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**#/?action_type=update")
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="View").click()
    page.locator("table.states").wait_for()
    changed = page.locator("table.states tr.changed")
    assert changed.count() == 1 and "name" in changed.inner_text() and "Ada" in changed.inner_text()
    page.locator("dl.facts").get_by_role("link", name="1", exact=True).click()
    page.locator("ol.timeline").wait_for()
    steps = page.locator("ol.timeline li")
    expect(steps).to_have_count(2)  # newest first
    assert "update" in steps.first.inner_text() and "create" in steps.last.inner_text()
    steps.last.get_by_role("button", name="State after this step").click()
    steps.last.locator("table.states").wait_for()
    assert "customer 1" in steps.last.inner_text() and "Ada" not in steps.last.inner_text()
    assert page.problems == []


def test_a_long_history_reads_on_step_by_step(page: Any, site: str, engine: Engine) -> None:
    """An object with more steps than a page of its timeline, and an entry found without its
    transaction (as for a row another writer stored) past the first thousand."""
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    with auditlog.audit_context(tenant_id=TENANT_A, user_id="bulk"), maker.begin() as session:
        customer = session.get_one(Customer, 2)
        for step in range(1, 1002):
            customer.name = f"step {step}"
            session.flush()
    with maker() as session:
        first = auditlog.query_history(session, object_id="2", action_type="update", page_size=1000)
        oldest = auditlog.query_history(session, object_id="2", page=2, page_size=1000).results[-1]
    assert first.count == 1001 and oldest.action_type == "create"
    sign_in(page, site)
    page.locator("table.entries tbody tr").first.wait_for()
    page.goto(f"{site}/history/view/#/object?content_type={oldest.content_type}&object_id=2")
    steps = page.locator("ol.timeline li")
    expect(steps).to_have_count(100)
    assert "step 1001" not in steps.first.inner_text()  # the step, not the value
    for _ in range(10):
        newest = steps.first.get_by_role("link", name="View").get_attribute("href")
        page.get_by_role("link", name="Older steps").click()
        expect(steps.first.get_by_role("link", name="View")).not_to_have_attribute("href", newest)
    expect(steps).to_have_count(2)  # 1002 steps: 10 pages of 100, then the update and the create
    assert "create" in steps.last.inner_text()
    page.get_by_role("link", name="Newer steps").click()
    expect(steps).to_have_count(100)
    # an address with only the entry's model and object: read along their history to find it
    page.goto(
        f"{site}/history/view/#/entry?id={oldest.id}&content_type={oldest.content_type}&object_id=2"
    )
    page.locator("table.states").wait_for()
    assert "customer 2" in page.locator("table.states").inner_text()
    assert page.problems == []
    # an address with only an id no entry has: a bounded search, not the tenant's whole history
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url))
    unknown = "01" + "Z" * 24
    page.goto(f"{site}/history/view/#/entry?id={unknown}")
    expect(page.get_by_text(f"No entry {unknown} is here.")).to_be_visible()
    searched = [url for url in reads if "/history/?" in url and "cursor" in url]
    assert 0 < len(searched) < 10  # the tenant's 1,000 entries and more would take 11 pages


def test_a_refused_token_is_said_and_another_tenant_sees_only_its_own(page: Any, site: str) -> None:
    sign_in(page, site, "not-a-token")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "not accepted" in alert.inner_text()
    page.get_by_label("Bearer token").fill("token-b")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("table.entries tbody tr")).to_have_count(2)
    assert TENANT_A not in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Bearer token").wait_for()


def test_recorded_values_are_shown_as_text_never_run(page: Any, site: str) -> None:
    sign_in(page, site)
    page.locator("table.entries tbody tr").first.wait_for()
    main = page.locator("main")
    assert MARKUP[1] in main.inner_text()  # the user id, as text
    page.get_by_role("link", name="View").first.click()
    page.locator("table.states").wait_for()
    shown = main.inner_text()
    assert MARKUP[0] in shown and MARKUP[2] in shown
    assert main.locator("script, img, b").count() == 0
    assert page.problems == []  # no script ran, no dialog opened


def test_usable_with_a_keyboard_and_on_a_phone(browser: Any, site: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    wide = "document.documentElement.scrollWidth"  # a phone widens its layout to fit content
    try:
        page.goto(f"{site}/history/view/")
        page.keyboard.type("token-a")  # the token field has the focus
        page.keyboard.press("Enter")
        page.locator("table.entries tbody tr").first.wait_for()
        assert page.evaluate(wide) <= 375, "the list scrolls sideways"
        user = page.get_by_label("User", exact=True)
        assert not user.is_visible()  # on a phone the entries come first, the filters folded
        page.get_by_text("Filters", exact=True).focus()
        page.keyboard.press("Enter")
        expect(user).to_be_visible()
        page.get_by_role("link", name="View").first.focus()
        page.keyboard.press("Enter")
        page.locator("table.states").wait_for()
        assert page.evaluate(wide) <= 375, "an entry scrolls sideways"
        page.locator("dl.facts a").first.focus()
        page.keyboard.press("Enter")
        page.locator("ol.timeline li").first.get_by_role("button").focus()
        page.keyboard.press("Enter")
        page.locator("ol.timeline table.states").first.wait_for()
        assert page.evaluate(wide) <= 375, "the timeline scrolls sideways"
    finally:
        context.close()


@pytest.mark.parametrize("mount", ["wsgi", "flask", "fastapi"])
def test_every_mount_serves_the_viewer_with_a_strict_policy(engine: Engine, mount: str) -> None:
    maker = sessionmaker(engine)
    authenticate = token_authenticator(TOKENS)
    if mount == "fastapi":
        from auditlog.integrations.fastapi import history_app

        asgi = history_app(maker, authenticate=authenticate)

        def send(method: str, url: str) -> httpx.Response:
            async def call() -> httpx.Response:
                transport = httpx.ASGITransport(app=asgi)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    return await client.request(method, url)

            with ThreadPoolExecutor(1) as pool:  # Playwright's loop may run in this thread
                return pool.submit(asyncio.run, call()).result()

    else:
        app: Any = make_wsgi_app(maker, authenticate)
        if mount == "flask":
            from flask import Flask

            from auditlog.integrations.flask import history_blueprint

            app = Flask(__name__)
            app.register_blueprint(history_blueprint(maker, authenticate=authenticate))
        client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://t")
        send = client.request

    def get(url: str) -> httpx.Response:
        return send("GET", url)

    moved = get("/history/view")
    assert moved.status_code in (301, 302, 307) and moved.headers["location"].endswith("view/")
    html = get("/history/view/")
    assert html.status_code == 200 and 'data-auth="bearer"' in html.text
    policy = html.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in html.text and "http" not in html.text
    assert get("/history/view/viewer.js").headers["content-type"].startswith("text/javascript")
    assert get("/history/view/..%2F..%2Fmodels.py").status_code == 404
    assert get("/history/view/nothing.js").status_code == 404
    head = send("HEAD", "/history/view/")
    assert head.status_code == 200 and head.headers["content-security-policy"] == policy


def test_the_apps_own_sign_in_under_a_prefix(browser: Any, engine: Engine) -> None:
    """A Flask app that signs people in with its own session cookie, the endpoint mounted at
    ``/audit/log`` (no final slash): no token form, and the caller's tenant's entries."""
    from flask import Flask, session
    from werkzeug.serving import make_server as werkzeug_server

    from auditlog.integrations.flask import history_blueprint

    seed_history(engine)
    app = Flask(__name__)
    app.secret_key = "test"

    @app.get("/login")
    def login() -> str:
        session["tenant"] = TENANT_A
        return "signed in"

    def caller() -> Principal | None:
        tenant = session.get("tenant")
        return Principal(tenant, "viewer") if tenant else None

    blueprint = history_blueprint(sessionmaker(engine), caller=caller, path="/log")
    app.register_blueprint(blueprint, url_prefix="/audit")
    server = werkzeug_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = f"http://127.0.0.1:{server.server_port}"
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{site}/audit/log/view")  # moved to view/, under the prefix
        page.get_by_role("alert").wait_for()
        assert "not signed in" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Bearer token").count() == 0
        page.goto(f"{site}/login")
        page.goto(f"{site}/audit/log/view/")
        expect(page.locator("table.entries tbody tr")).to_have_count(5)  # tenant A's
        page.get_by_role("link", name="View").first.click()
        page.locator("dl.facts a").first.click()  # the object's timeline, from /audit/log/state/
        steps = page.locator("ol.timeline li")
        expect(steps).to_have_count(2)  # customer 3: created, then deleted
        steps.first.get_by_role("button").click()
        expect(steps.first).to_contain_text("did not exist after this step")
        steps.last.get_by_role("button").click()
        expect(steps.last.locator("table.states")).to_contain_text("customer 3")
        assert page.get_by_role("button", name="Sign out").is_hidden()
    finally:
        context.close()
        server.shutdown()


def test_odd_ids_other_writers_rows_and_a_bad_filter(page: Any, site: str, engine: Engine) -> None:
    """An object id with characters that mean something in an address, a row another writer
    stored with no object id and no transaction, a model picked by its name, and a filter the
    endpoint refuses, said beside the filters kept to correct it."""
    auditlog.register(Membership)
    maker = sessionmaker(engine, expire_on_commit=False)
    auditlog.enable(maker)
    odd = "a/b?c#d%e&f=g é"
    with auditlog.audit_context(tenant_id=TENANT_A, user_id="odd"), maker.begin() as session:
        session.add(Membership(org=odd, member=1, role="admin"))
        session.flush()
        session.get_one(Membership, (odd, 1)).role = "owner"
    with maker() as session:
        customer_type = auditlog.query_history(session, object_id="1").results[0].content_type
        stored = auditlog.query_history(session, content_type=Membership).results[0].object_id
    assert json.loads(stored) == [odd, 1]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(AuditLog).values(
                id=str(ULID()), tenant_id=TENANT_A, user_id="trigger", action_type="update",
                timestamp=dt.datetime.now(dt.timezone.utc), object_id="", user_agent="",
                content_type=customer_type, before_state={"name": "x"}, after_state={"name": "y"},
            )
        )  # fmt: skip
    sign_in(page, site)
    rows = page.locator("table.entries tbody tr")
    rows.first.wait_for()
    foreign = rows.filter(has_text="trigger")
    assert "no object id" in foreign.inner_text()
    foreign.get_by_role("link", name="View").click()
    page.locator("table.states").wait_for()
    assert page.locator("table.states tr", has_text="name").inner_text().split()[1:] == ["x", "y"]
    page.go_back()
    rows.filter(has_text="odd").first.get_by_role("link", name="View").click()
    page.locator("table.states").wait_for()
    assert stored in page.locator("dl.facts").inner_text()
    page.locator("dl.facts").get_by_role("link", name=stored).click()
    steps = page.locator("ol.timeline li")
    expect(steps).to_have_count(2)
    steps.first.get_by_role("button").click()
    assert "owner" in steps.first.locator("table.states").inner_text()
    page.goto(f"{site}/history/view/#/")
    rows.filter(has_text="odd").first.get_by_role("link", name="Membership").click()
    expect(rows).to_have_count(2)  # the model's name, as a filter
    assert page.get_by_label("Model").input_value() == "tests.models.Membership"
    page.get_by_label("Model").fill("Nothing")
    page.get_by_role("button", name="Filter").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "no model is named 'Nothing'" in alert.inner_text()
    assert page.get_by_label("Model").input_value() == "Nothing"
    assert page.problems == []
