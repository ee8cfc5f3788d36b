"""The web console end to end: a real server (auth required), Debian's Chromium, the real pages.

One server and one browser for the module; each test opens its own browser context (its own
sessionStorage, so its own key). Every context aborts and records requests to anything but the
server, and records console errors, page exceptions and dialogs (see _browser.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _browser import Console, chromium
from playwright.sync_api import Browser, Page, expect

from engram.testing import EngramProcess

A, B = "alpha", "bravo-secret"  # B's name and content must never reach a reader of A
XSS = "<img src=x onerror=alert(1)>"
CHAIN = [("m-espresso", "the espresso machine is on the third floor"),
         ("m-ada", "Ada repairs machines on Fridays"),
         ("m-tools", "the toolbox lives in the basement")]


class World:
    def __init__(self, srv: EngramProcess, admin: str, reader: str, browser: Browser) -> None:
        self.srv = srv
        self.admin = admin
        self.reader = reader
        self.browser = browser
        self.http = httpx.Client(base_url=srv.http_url, timeout=30.0)

    def api(self, method: str, path: str, space: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.admin}"}
        if space:
            headers["X-Memory-Space"] = space
        resp = self.http.request(method, path, headers=headers, **kw)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def console(self) -> Console:
        return Console(self.browser, self.srv.http_url)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = EngramProcess.start(tmp_path_factory.mktemp("console"), spaces=[A, B],
                              settings={"auth": "required"})
    admin = (srv.data_dir / "_system" / "admin.key").read_text().strip()
    try:
        with chromium() as browser:
            w = World(srv, admin, "", browser)
            w.reader = w.api("POST", "/api/v1/keys", json={"name": "alpha reader", "role": "reader",
                                                            "spaces": [A]})["key"]
            for mid, text in CHAIN:
                w.api("POST", "/api/v1/memories/remember", A, json={
                    "id": mid, "content": text, "tags": ["office"], "metadata": {"floor": "3"}})
            w.api("POST", "/api/v1/memories/associate", A, json={
                "source_id": "m-espresso", "target_id": "m-ada", "strength": 0.9, "bidirectional": False})
            w.api("POST", "/api/v1/memories/associate", A, json={
                "source_id": "m-ada", "target_id": "m-tools", "strength": 0.6})
            w.api("POST", "/api/v1/memories/remember", A,
                  json={"id": "m-xss", "content": XSS, "tags": ["web"]})
            for i, day in enumerate(("2026-05-01", "2026-05-02", "2026-05-03")):
                w.api("POST", "/api/v1/episodes/remember", A, json={
                    "id": f"ep-{i}", "when": f"{day}T09:30:00Z",
                    "content": "coffee with Ada at the espresso machine", "what": "coffee with Ada",
                    "who": ["Ada"], "tags": ["coffee"]})
            w.api("POST", "/api/v1/consolidate", A, json={"min_cluster": 2})
            w.api("POST", "/api/v1/memories/remember", B, json={"id": "b-1", "content": f"{B}-content"})
            yield w
            w.http.close()
    finally:
        srv.kill()


@pytest.fixture
def console(world: World) -> Iterator[Console]:
    c = world.console()
    yield c
    c.close()


def _text(page: Page) -> str:
    return page.inner_text("body")


# ------------------------------------------------------------------------------ every page, clean


def test_every_page_loads_clean_and_offline(world: World, console: Console) -> None:
    page = console.login(world.admin)
    page.wait_for_selector(f"table.spaces tr[data-space={A}]")
    row = page.inner_text(f"table.spaces tr[data-space={A}]")
    desc = world.api("GET", f"/api/v1/spaces/{A}")
    assert str(desc["memory_count"]) in row and str(desc["last_lsn"]) in row and "healthy" in row
    assert "hash" in row  # the embedder
    page.wait_for_selector("#create-space")  # admin: write controls
    console.shot("spaces")

    console.go(f"#/memories?space={A}")
    page.wait_for_selector("table.memories tr[data-memory=m-espresso]")
    console.shot("memories")

    console.go(f"#/memory?space={A}&id=m-ada")
    page.wait_for_selector("table.edges")
    edges = page.inner_text("table.edges")
    assert "m-espresso" in edges and "m-tools" in edges and "0.900" in edges and "0.600" in edges
    assert page.inner_text("#memory-content") == CHAIN[1][1]
    console.shot("memory")

    console.go(f"#/recall?space={A}")
    page.wait_for_selector("#recall-form")
    console.go(f"#/beliefs?space={A}")
    page.wait_for_selector("article.belief")
    cites = page.locator("article.belief li[data-episode]")
    assert cites.count() >= 2
    assert "ep-" in cites.first.inner_text()
    console.shot("beliefs")

    console.go(f"#/live?space={A}")
    expect(page.locator("#live-state")).to_have_text("live")  # no eval: the CSP forbids it
    console.go("#/keys")
    page.wait_for_selector("table.keys")
    assert "alpha reader" in page.inner_text("table.keys")
    console.shot("keys")
    console.watch.clean()


def test_key_is_asked_once_per_tab_and_kept_in_session_storage(world: World, console: Console) -> None:
    page = console.login(world.admin)
    assert page.evaluate("sessionStorage.getItem('engram.key')") == world.admin
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    page.wait_for_selector("#who-role")  # no second prompt in the same tab
    assert page.locator("#key-input").count() == 0
    # every API call carried the key as a Bearer token
    other = world.console()
    try:
        other.page.goto(f"{world.srv.http_url}/console")
        other.page.wait_for_selector("#key-input")  # a new tab (context) asks again
        other.watch.clean()
    finally:
        other.close()
    console.watch.clean()


def test_a_refused_key_asks_again(world: World, console: Console) -> None:
    page = console.page
    page.goto(f"{world.srv.http_url}/console")
    page.fill("#key-input", "egk_" + "Q" * 43)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login .notice.error")
    assert "refused" in page.inner_text("#login")
    assert page.evaluate("sessionStorage.getItem('engram.key')") is None
    # the browser logs the 401 itself ("Failed to load resource"); nothing else may be wrong
    assert all("401" in e for e in console.watch.errors), console.watch.errors
    assert not console.watch.foreign and not console.watch.dialogs


# ------------------------------------------------------------------------------ live and memories


def test_remembered_memory_appears_on_live_and_in_memories(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    console.go(f"#/live?space={A}")
    expect(page.locator("#live-state")).to_have_text("live")  # no eval: the CSP forbids it
    text = f"the lift is out of order {time.time_ns()}"
    receipt = world.api("POST", "/api/v1/memories/remember", A, json={"content": text, "tags": ["lift"]})
    row = page.locator(f"#live-events tr[data-type=stored][data-lsn='{receipt['lsn']}']")
    row.wait_for()
    assert text in row.inner_text()
    assert "ms" in page.inner_text("#live-lag")  # lag shown
    console.shot("live")

    # paused: events are held, not shown, then shown on resume
    page.click("#live-pause")
    held = f"held while paused {time.time_ns()}"
    second = world.api("POST", "/api/v1/memories/remember", A, json={"content": held})
    expect(page.locator("#live-counts")).to_contain_text("1 held")
    assert page.locator(f"#live-events tr[data-lsn='{second['lsn']}']").count() == 0
    page.click("#live-pause")
    page.locator(f"#live-events tr[data-lsn='{second['lsn']}']").wait_for()

    console.go(f"#/memories?space={A}&tags=lift")
    page.locator("table.memories td.content", has_text=text).wait_for()
    assert page.locator("table.memories tbody tr").count() == 1  # the tag filter kept only it
    console.watch.clean()


def test_memory_filters(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    console.go(f"#/memories?space={A}&type=episodic")
    page.wait_for_selector("table.memories tr[data-memory=ep-0]")
    ids = page.locator("table.memories tbody tr").evaluate_all("rows => rows.map(r => r.dataset.memory)")
    assert sorted(ids) == ["ep-0", "ep-1", "ep-2"]
    # time: episodes by their `when`
    console.go(f"#/memories?space={A}&type=episodic&from=2026-05-02T00:00&to=2026-05-02T23:59")
    page.wait_for_selector("#memory-summary:has-text('end of list')")
    ids = page.locator("table.memories tbody tr[data-memory]").evaluate_all(
        "rows => rows.map(r => r.dataset.memory)")
    assert ids == ["ep-1"]
    console.watch.clean()


def test_metadata_filter_is_sent_or_refused_clearly(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    doc = world.http.get("/openapi.json").json()
    params = {p["name"] for p in doc["paths"]["/api/v1/memories"]["get"].get("parameters", [])}
    console.go(f"#/memories?space={A}&meta=" + json.dumps({"floor": "3"}))
    if "filter" in params:  # a server with metadata filters: only the memories whose floor is 3
        page.wait_for_selector("#memory-summary:has-text('end of list')")
        ids = page.locator("table.memories tbody tr[data-memory]").evaluate_all(
            "rows => rows.map(r => r.dataset.memory)")
        assert sorted(ids) == sorted(mid for mid, _ in CHAIN)
        console.watch.clean()
    else:  # a server without: said plainly, and no list that merely looks filtered
        page.wait_for_selector("#drop-meta")
        assert "does not filter memories by metadata" in page.inner_text("main")
        assert page.locator("table.memories tbody tr").count() == 0
        page.click("#drop-meta")
        page.wait_for_selector("table.memories tr[data-memory=m-xss]")
        console.watch.clean()


# ------------------------------------------------------------------------------ recall


def test_recall_shows_signals_and_the_activation_graph(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    console.go(f"#/recall?space={A}")
    page.fill("#r-query", "espresso")
    page.select_option("#r-mode", "spreading")
    page.click("#recall-form button[type=submit]")
    page.wait_for_selector("#activation-graph")
    first = page.locator("table.results tbody tr").first
    assert first.get_attribute("data-memory") in ("m-espresso", "ep-0", "ep-1", "ep-2")
    ada = page.locator("table.results tr[data-memory=m-ada]")
    signals = ada.locator("dd[data-signal]").evaluate_all("els => els.map(e => e.dataset.signal)")
    assert {"relevance", "activation", "recency", "spread"} <= set(signals)
    # the graph: the edges activation crossed, weighted by the associations' strength
    edge = page.locator("#activation-graph line[data-from=m-espresso][data-to=m-ada]")
    assert edge.get_attribute("data-strength") == "0.9"
    assert float(edge.get_attribute("stroke-width") or 0) == pytest.approx(1 + 7 * 0.9, abs=0.01)
    tools = page.locator("#activation-graph line[data-from=m-ada][data-to=m-tools]")
    assert tools.get_attribute("data-strength") == "0.6"
    assert page.locator("#activation-graph g.node[data-memory=m-tools]").count() == 1
    console.shot("recall")
    console.watch.clean()


# ------------------------------------------------------------------------------ isolation and safety


def test_reader_of_a_never_sees_b_and_gets_no_write_controls(world: World, console: Console) -> None:
    page = console.login(world.reader)
    page.wait_for_selector(f"table.spaces tr[data-space={A}]")
    assert "reader" in page.inner_text("#who-role")
    assert page.locator("#create-space").count() == 0
    assert page.locator("nav a[data-page=keys]").count() == 0
    options = page.locator("#space-select option").evaluate_all("os => os.map(o => o.value)")
    assert options == [A]
    visited = []
    for hash_, ready in ((f"#/memories?space={A}", "table.memories tr[data-memory=m-espresso]"),
                         (f"#/memory?space={A}&id=m-ada", "table.edges"),
                         (f"#/beliefs?space={A}", "article.belief"),
                         (f"#/live?space={A}", "#live-state:has-text('live')"),
                         (f"#/recall?space={A}", "#recall-form")):
        console.go(hash_)
        page.wait_for_selector(ready)
        visited.append(page.content() + _text(page))
    page.fill("#r-query", "content")
    page.click("#recall-form button[type=submit]")
    page.wait_for_selector("#recall-summary")
    visited.append(page.content() + _text(page))
    assert page.locator("button.danger, #consolidate, #create-key").count() == 0
    console.go(f"#/memory?space={A}&id=m-ada")
    page.wait_for_selector("table.edges")
    assert page.locator("button.danger").count() == 0  # no forget controls for a reader
    for html in visited:
        assert B not in html and "b-1" not in html
    for url in console.watch.requests:
        assert B not in url
    console.watch.clean()


def test_memory_content_is_text_never_markup(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    console.go(f"#/memories?space={A}&tags=web")
    cell = page.locator("table.memories tr[data-memory=m-xss] td.content")
    cell.wait_for()
    assert cell.inner_text() == XSS
    console.go(f"#/memory?space={A}&id=m-xss")
    page.wait_for_selector("#memory-content")
    assert page.inner_text("#memory-content") == XSS
    console.go(f"#/live?space={A}")
    expect(page.locator("#live-state")).to_have_text("live")  # no eval: the CSP forbids it
    receipt = world.api("POST", "/api/v1/memories/remember", A, json={"content": XSS + " again"})
    page.locator(f"#live-events tr[data-lsn='{receipt['lsn']}']").wait_for()
    console.go(f"#/recall?space={A}")
    page.fill("#r-query", "img src onerror alert")
    page.click("#recall-form button[type=submit]")
    page.wait_for_selector("table.results tr[data-memory=m-xss]")
    page.wait_for_timeout(300)  # give a would-be onerror handler its chance
    assert page.locator("main img").count() == 0
    assert not console.watch.dialogs
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    console.watch.clean()


def test_console_answers_carry_a_strict_csp(world: World) -> None:
    for path in ("/console", "/console/app.js", "/console/app.css"):
        resp = world.http.get(path)
        assert resp.status_code == 200
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp and "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp and "require-trusted-types-for 'script'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
    html = world.http.get("/console").text
    assert "<script>" not in html and "style=" not in html and " on" not in html.replace("\n", " ")
    # only the listed files are served, without a key; the data needs one
    for raw in ("/console/..%2Faccess.py", "/console/%2e%2e", "/console/%2e%2e%2fapp.py",
                "/console/nothing.js", "/docs/assets/..%2F..%2Fconsole%2Fapp.js", "/docs/assets/core.py"):
        resp = world.http.get(raw)
        assert resp.status_code in (401, 404) and b"import" not in resp.content, raw
    assert world.http.get("/api/v1/spaces").status_code == 401


def test_inline_script_is_blocked_by_the_policy(world: World, console: Console) -> None:
    page = console.login(world.admin, "spaces")
    page.wait_for_selector(f"table.spaces tr[data-space={A}]")
    # Trusted Types: assigning a string to innerHTML throws, so no code path can inject markup
    err = page.evaluate("() => { try { document.body.innerHTML = '<b>x</b>'; return ''; } "
                        "catch (e) { return e.name; } }")
    assert err == "TypeError"
    console.watch.errors.clear()  # the violation report above is the expected one


def test_docs_load_offline(world: World, console: Console) -> None:
    page = console.page
    page.goto(f"{world.srv.http_url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Engram" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag-section")
    assert page.locator(".opblock").count() >= 30
    console.shot("docs")
    console.watch.clean()
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in console.watch.requests)
