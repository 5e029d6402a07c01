"""The playground page in a real headless browser: Debian's ``chromium`` (tools/install-sysdeps.sh installs it)
driven by playwright, launched with the system browser's path (nothing is downloaded), against the service
over a small collection built here. Skipped only when no Chromium is installed."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from funnelrank.rerank.policy import DEFAULT_FLOOR
from funnelrank.serve.app import create_app
from service_helpers import TOY_DOCS, overlap_reranker, running_server
from test_playground import served

FLOOR = f"{DEFAULT_FLOOR:g}"  # the default floor as the page prints it

ROOT = Path(__file__).resolve().parent.parent


def _load_tool() -> Any:
    spec = importlib.util.spec_from_file_location("playground_screenshot", ROOT / "tools" / "playground_screenshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
CHROMIUM = tool.find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (apt-get install chromium; tools/install-sysdeps.sh installs it, so CI has it)",
)
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with tool.launch_browser(CHROMIUM) as b:
        yield b


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served(trusted_hosts=["127.0.0.1", "localhost"]) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    with served(api_key=KEY) as url:
        yield url


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def open(self, url: str, state: str = "done") -> Any:
        self.page.goto(url)
        self.page.wait_for_selector(f"body[data-state='{state}']", timeout=20_000)
        return self.page

    def submit(self, form: str, state: str) -> None:
        self.page.evaluate("document.body.dataset.state = ''")
        self.page.click(f"#{form} button[type='submit']")
        self.page.wait_for_selector(f"body[data-state='{state}']", timeout=20_000)


@pytest.fixture()
def tab(browser: Any) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.page.close()


def test_page_loads_with_no_console_error(server: str, tab: Page) -> None:
    page = tab.open(server + "/", state="ready")
    assert page.title() == "funnelrank playground"
    assert "overlap-toy" in page.inner_text("#server-info") and "4 documents" in page.inner_text("#server-info")
    assert page.is_visible("#panel-search") and not page.is_visible("#panel-rerank")
    assert page.is_hidden("#message")
    assert tab.errors == []


def test_a_query_shows_both_lists_the_floor_line_and_greyed_results(server: str, tab: Page) -> None:
    page = tab.open(server + "/?q=" + quote("capital of France"))
    stage1 = page.locator("#stage1-list li.result")
    reranked = page.locator("#reranked-list li.result")
    assert stage1.count() == 2 and reranked.count() == 2
    assert page.inner_text("#stage1-list").count("Paris") == 2
    assert reranked.nth(0).get_attribute("data-id") == "fr" and "The capital of France is Paris." in reranked.nth(0).inner_text()
    line = page.locator("#reranked-list li.floor-line")
    assert line.count() == 1 and line.is_visible() and line.get_attribute("data-floor") == FLOOR
    assert f"floor {FLOOR}" in line.inner_text()
    # The candidate below the floor comes after the line, greyed; the kept one before it is not.
    greyed = page.locator("#reranked-list li.result.below")
    assert greyed.count() == 1 and greyed.get_attribute("data-id") == "louvre"
    order = page.eval_on_selector_all("#reranked-list > li", "els => els.map(e => e.className)")
    assert order == ["result", "floor-line", "result below"]
    opacity = float(greyed.evaluate("e => getComputedStyle(e).opacity"))
    assert opacity < 0.6
    assert float(reranked.nth(0).evaluate("e => getComputedStyle(e).opacity")) == 1.0
    assert page.locator("#stage1-list li.result.below").count() == 1  # greyed in the stage-1 list too
    assert page.is_hidden("#no-evidence")
    timings = page.inner_text("#timings")
    assert "stage 1" in timings and "stage 2 (rerank)" in timings and "total" in timings and " ms" in timings
    assert tab.errors == []


def test_a_typed_query_updates_the_link_and_url_settings_are_used(server: str, tab: Page) -> None:
    page = tab.open(server + "/?q=Paris&floor=0.1&top_k=1")
    assert page.input_value("#floor") == "0.1" and page.input_value("#top-k") == "1"
    assert page.locator("#reranked-list li.result:not(.below)").count() == 1
    assert page.get_attribute("#reranked-list li.floor-line", "data-floor") == "0.1"
    page.fill("#q", "bananas potassium")
    tab.submit("search-form", "done")
    assert "q=bananas+potassium" in page.url and "floor=0.1" in page.url and "top_k=1" in page.url
    assert page.locator("#reranked-list li.result").first.get_attribute("data-id") == "banana"
    assert tab.errors == []


def test_a_junk_query_shows_the_no_evidence_banner(server: str, tab: Page) -> None:
    page = tab.open(server + "/?q=" + quote("knitting zebra quantum"))  # stage 1 finds "knit"; the floor refuses it
    banner = page.locator("#no-evidence")
    assert banner.is_visible() and banner.inner_text().startswith(f"No evidence: nothing cleared the floor ({FLOOR})")
    assert page.locator("#reranked-list li.result:not(.below)").count() == 0
    assert page.locator("#reranked-list li.result.below").count() == 1
    page = tab.open(server + "/?q=zzqxv")  # nothing at all in stage 1
    assert "stage 1 found no candidates" in page.inner_text("#no-evidence")
    assert tab.errors == []


def test_a_wrong_api_key_shows_a_clear_message(keyed_server: str, tab: Page) -> None:
    page = tab.open(keyed_server + "/", state="ready")  # the page itself needs no key
    page.fill("#q", "capital of France")
    tab.submit("search-form", "error")
    message = page.inner_text("#message")
    assert page.is_visible("#message") and "This server needs an API key (HTTP 401)" in message
    page.fill("#api-key", "wrong-key")
    tab.submit("search-form", "error")
    assert "The server refused this API key (HTTP 401)" in page.inner_text("#message")
    assert page.locator("#reranked-list li").count() == 0
    page.fill("#api-key", KEY)
    tab.submit("search-form", "done")
    assert page.is_hidden("#message") and page.locator("#reranked-list li.result").count() == 2
    # The key stays in this tab's session storage: a reload keeps it, and ?q= then runs with it.
    assert page.evaluate("sessionStorage.getItem('funnelrank.apiKey')") == KEY
    page = tab.open(keyed_server + "/?q=Paris")
    assert page.input_value("#api-key") == KEY and page.locator("#reranked-list li.result").count() >= 1


def test_the_rerank_tab_scores_pasted_passages_against_the_floor(server: str, tab: Page) -> None:
    page = tab.open(server + "/?tab=rerank", state="ready")
    assert page.is_visible("#panel-rerank")
    page.fill("#rerank-query", "capital of France")
    page.fill("#passages", "\n".join(TOY_DOCS))
    tab.submit("rerank-form", "done")
    rows = page.locator("#rerank-list li.result")
    assert rows.count() == 4 and "The capital of France is Paris." in rows.nth(0).inner_text()
    assert page.get_attribute("#rerank-list li.floor-line", "data-floor") == FLOOR
    assert page.locator("#rerank-list li.result.below").count() == 3 and page.is_hidden("#rerank-no-evidence")
    page.fill("#rerank-floor", "0.99")
    tab.submit("rerank-form", "done")
    assert page.is_visible("#rerank-no-evidence") and "No evidence" in page.inner_text("#rerank-no-evidence")
    assert tab.errors == []


def test_without_a_collection_the_page_opens_on_the_rerank_tab(browser: Any) -> None:
    reranker = overlap_reranker()
    app = create_app(reranker, model_name="overlap-toy")  # funnelrank serve --no-collection
    try:
        with running_server(app) as url:
            page = Page(browser)
            try:
                view = page.open(url + "/?q=Paris", state="ready")  # nothing to search: ?q= does not run
                assert "no collection" in view.inner_text("#server-info")
                assert view.is_visible("#panel-rerank") and view.is_disabled("#q")
                assert page.errors == []
            finally:
                page.page.close()
    finally:
        reranker.scheduler.close()


def test_dump_dom_holds_the_results_and_the_floor(server: str) -> None:
    """``chromium --headless --dump-dom --virtual-time-budget=8000 URL?q=...`` prints the page after it ran the
    query: the results' texts and the floor's value are in the DOM (no JavaScript-only view)."""
    command = [CHROMIUM, "--headless", "--dump-dom", "--virtual-time-budget=8000", "--disable-gpu",
               server + "/?q=" + quote("capital of France")]
    if os.geteuid() == 0:
        command.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert "The capital of France is Paris." in dom
    assert "Paris hosts the Louvre, the most visited museum in France." in dom
    assert f'data-floor="{FLOOR}"' in dom and f"floor {FLOOR}" in dom
    assert 'class="result below"' in dom and 'data-state="done"' in dom


def test_the_docs_screenshot_is_made_by_the_tool(tmp_path: Path, browser: Any) -> None:
    """tools/playground_screenshot.py (which made docs/img/playground.png) runs: the default reranker over its
    own collection, the page opened at ?q=..., a full-page PNG written."""
    out = tmp_path / "img" / "playground.png"
    with tool.served_collection() as url:
        tool.screenshot(url, out, browser=browser)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height >= 600 and len(data) > 20_000
    committed = ROOT / "docs" / "img" / "playground.png"
    assert committed.is_file() and committed.read_bytes()[:8] == data[:8]
