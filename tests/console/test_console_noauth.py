"""The console on a loopback server with auth disabled: no key asked, everything the API allows shown."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _browser import Console, chromium

from engram.testing import EngramProcess


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("console-open"), spaces=["alpha"],
                              settings={"auth": "disabled"})
    try:
        httpx.post(srv.http_url + "/api/v1/memories/remember", headers={"X-Memory-Space": "alpha"},
                   json={"id": "m-1", "content": "no key needed on loopback"}, timeout=30).raise_for_status()
        with chromium() as browser:
            c = Console(browser, srv.http_url)
            yield c
            c.close()
    finally:
        srv.kill()


def test_no_key_is_asked_when_the_server_checks_none(console: Console) -> None:
    page = console.login(None)
    assert "auth disabled" in page.inner_text("#who-role")
    assert page.locator("#key-input, #forget-key").count() == 0
    page.wait_for_selector("table.spaces tr[data-space=alpha]")
    page.wait_for_selector("#create-space")  # anonymous is admin on every space
    console.go("#/memories?space=alpha")
    page.wait_for_selector("table.memories tr[data-memory=m-1]")
    console.go("#/keys")
    page.wait_for_selector("#create-key")
    assert "checks no keys" in page.inner_text("main")
    assert page.evaluate("sessionStorage.getItem('engram.key')") is None
    console.watch.clean()
