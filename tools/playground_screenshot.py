"""Screenshot of the playground page (``funnelrank serve``'s ``/``) in headless Chromium, for the docs.

    .venv/bin/python tools/playground_screenshot.py                 # -> docs/img/playground.png
    .venv/bin/python tools/playground_screenshot.py --out /tmp/p.png --query "ibuprofen dose for a child"

It indexes :data:`DOCS` (a dozen short passages) in a BM25 collection, serves it with the default reranker on
127.0.0.1 (the app ``funnelrank serve`` runs, in this process), opens ``/?q=QUERY`` in Debian's ``chromium``
driven by playwright (launched with the system browser's path: nothing is downloaded) and saves the page.
``tests/test_playground_browser.py`` runs it, so the picture in the docs is what the page shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "img" / "playground.png"
DEFAULT_QUERY = "ibuprofen dose for a child"
CHROMIUM_ENV = "FUNNELRANK_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser")

DOCS = [
    "Ibuprofen for children is dosed by body weight: 5-10 mg per kg every 6-8 hours.",
    "Ibuprofen dosing for adults: 200-400 mg every 4-6 hours, at most 1,200 mg a day without advice.",
    "Aspirin is not for children with a viral fever: it is linked to Reye's syndrome.",
    "Paracetamol (acetaminophen) for a child: 15 mg per kg, up to four doses in 24 hours.",
    "A child's fever is usually a sign that the body is fighting an infection.",
    "Read the label: children's ibuprofen comes as a liquid of 100 mg per 5 ml.",
    "Bananas are rich in potassium and easy to digest.",
    "The dose of a dog's heartworm tablet depends on the dog's weight.",
    "Vitamin D for children: 400 IU a day in the first year.",
    "Chocolate chip cookies need butter, sugar, flour and a hot oven.",
    "Ibuprofen is a non-steroidal anti-inflammatory drug (NSAID).",
    "Keep medicines out of the reach of children.",
]
"""The collection the screenshot searches."""


def find_chromium() -> str | None:
    """The system Chromium's executable: ``$FUNNELRANK_CHROMIUM`` when set, else ``chromium`` or
    ``chromium-browser`` on PATH (Debian's ``chromium`` package; ``tools/install-sysdeps.sh`` installs it).
    None when there is none."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        return override if Path(override).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def launch_browser(executable: str | None = None) -> Iterator[Any]:
    """A playwright Chromium ``Browser`` on the system Chromium (headless; never a downloaded browser).
    RuntimeError when no Chromium is installed."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium: apt-get install chromium (tools/install-sysdeps.sh), or set "
                           f"${CHROMIUM_ENV} to its executable")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(base_url: str, out: Path | str, query: str = DEFAULT_QUERY, *, browser: Any | None = None,
               width: int = 1280, timeout_s: float = 30.0) -> Path:
    """Open ``base_url/?q=query``, wait until the page has drawn the answer, and save a full-page PNG at `out`
    (written atomically). Returns `out`."""
    from funnelrank.files import atomic_writer

    out = Path(out)
    with launch_browser() if browser is None else _given(browser) as b:
        page = b.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        try:
            page.goto(f"{base_url}/?q={quote(query)}")
            page.wait_for_selector("body[data-state='done'], body[data-state='error']", timeout=timeout_s * 1000)
            png = page.screenshot(full_page=True)
        finally:
            page.close()
    with atomic_writer(out) as fh:
        fh.write(png)
    return out


@contextmanager
def _given(browser: Any) -> Iterator[Any]:
    yield browser


@contextmanager
def served_collection(docs: list[str] = DOCS, reranker: Any | None = None) -> Iterator[str]:
    """`docs` in a BM25 collection behind the service app (the default reranker unless `reranker`) on
    127.0.0.1:<free port>, served by uvicorn in a thread; yields the base URL."""
    import socket

    import uvicorn
    from funnelrank.rerank import Reranker
    from funnelrank.serve.app import create_app
    from funnelrank.serve.server import server_config
    from funnelrank.store.collection import Collection

    collection = Collection(dense=False)
    collection.add([f"doc{i + 1}" for i in range(len(docs))], docs)
    owned = reranker is None
    reranker = Reranker() if reranker is None else reranker
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(reranker, collection=collection, model_name="funnelrank-default",
                     trusted_hosts=["127.0.0.1", "localhost"])
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="playground-screenshot", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        if owned:
            reranker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default {DEFAULT_OUT})")
    parser.add_argument("--query", default=DEFAULT_QUERY, help=f"the query shown (default {DEFAULT_QUERY!r})")
    args = parser.parse_args(argv)
    with served_collection() as url:
        path = screenshot(url, args.out, args.query)
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
