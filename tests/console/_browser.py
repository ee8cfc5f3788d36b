"""Browser helpers for the console's end-to-end tests: one real server and one headless Chromium per module.

Chromium is Debian's (``apt-get install -y chromium``: /usr/bin/chromium, driven by Python
playwright; Playwright's own browser download does not work here). Without it these tests FAIL,
they never skip: the console is a feature, and an untested one is a missing one.

Every page runs in a fresh browser context (its own sessionStorage) that records what the page
did: console errors, uncaught exceptions, dialogs (alert/confirm/prompt) and every request. A
request to anything but the server under test is aborted and recorded, so a test both proves the
console works offline and fails if it ever tries the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

CHROMIUM = os.environ.get("ENGRAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-features=Translate,OptimizationHints,MediaRouter"]
#: ENGRAM_CONSOLE_SCREENSHOTS=docs/img writes the pages' screenshots for docs/console.md.
SHOTS = os.environ.get("ENGRAM_CONSOLE_SCREENSHOTS", "")


@dataclass
class Watch:
    """What one browser context did."""

    origin: str
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def clean(self) -> None:
        assert not self.errors, f"console errors / page exceptions: {self.errors}"
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"
        assert not self.foreign, f"requests leaving {self.origin}: {self.foreign}"
        for url in self.requests:
            host = urlsplit(url).hostname
            assert url.startswith(("data:", "blob:")) or host == "127.0.0.1", url


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under playwright; a test FAILS (never skips) when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required for the console tests and is not at {CHROMIUM}: "
                    "apt-get install -y chromium (.ci/run does this)", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Console:
    """A browser context on the console of one server, with its :class:`Watch`."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.base = base
        self.watch = Watch(origin=base)
        self.context: BrowserContext = browser.new_context(viewport={"width": 1360, "height": 860})
        self.context.set_default_timeout(15_000)
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.watch.errors.append(f"pageerror: {exc}"))
        self.page.on("dialog", self._dialog)

    def _route(self, route: Route) -> None:
        url = route.request.url
        self.watch.requests.append(url)
        if url.startswith(self.base + "/") or url == self.base or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.watch.foreign.append(url)
            route.abort()

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.watch.errors.append(f"console: {msg.text}")

    def _dialog(self, dialog: Any) -> None:
        self.watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def login(self, token: str | None, page: str = "spaces") -> Page:
        self.page.goto(f"{self.base}/console#/{page}")
        if token is not None:
            self.page.fill("#key-input", token)
            self.page.click("#login button[type=submit]")
        self.page.wait_for_selector("#who-role")
        self.page.wait_for_selector(f"main[data-page={page}]")
        return self.page

    def go(self, hash_: str) -> Page:
        self.page.evaluate("h => { window.location.hash = h; }", hash_)
        name = hash_.lstrip("#/").split("?")[0]
        self.page.wait_for_selector(f"main[data-page={name}]")
        return self.page

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
