"""Retake the viewer's screenshots in this folder: ``nox -s screenshots``.

Runs ``auditlog demo`` on a free port, signs in with Chromium (``/usr/bin/chromium`` unless
``AUDITLOG_TEST_CHROMIUM``) and photographs each view: sign-in, list, entry, timeline, a phone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("AUDITLOG_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TOKEN = "demo-token"


def main() -> None:
    env = {**os.environ, "AUDITLOG_DEMO_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "auditlog", "demo", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if found := re.search(r"Viewer: (\S+)", line):
                take(found.group(1))
                return
        raise SystemExit("auditlog demo printed no viewer address")
    finally:
        demo.terminate()
        demo.wait(10)


def take(url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(url)
        page.get_by_label("Bearer token").fill(TOKEN)
        page.screenshot(path=HERE / "viewer-sign-in.png")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("table.entries tbody tr").first).to_be_visible()
        page.screenshot(path=HERE / "viewer-list.png", full_page=True)
        page.locator("table.entries tbody tr", has_text="tags").get_by_role(
            "link", name="View"
        ).click()
        page.locator("table.states").wait_for()
        page.screenshot(path=HERE / "viewer-entry.png", full_page=True)
        page.locator("dl.facts a").first.click()
        page.locator("ol.timeline li").first.get_by_role("button").click()
        page.locator("ol.timeline table.states").first.wait_for()
        page.screenshot(path=HERE / "viewer-timeline.png", full_page=True)
        phone = browser.new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
        phone.goto(url)
        phone.get_by_label("Bearer token").fill(TOKEN)
        phone.get_by_role("button", name="Sign in").click()
        phone.locator("table.entries tbody tr").first.wait_for()
        phone.screenshot(path=HERE / "viewer-phone.png")
        browser.close()


if __name__ == "__main__":
    main()
