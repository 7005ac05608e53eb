"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright's sync API."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pbistream.testing import RunningServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# Module scope, not session: Playwright's sync API keeps its event loop marked as
# running while it is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing and CI=true: install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); browser tests need it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("playwright is not installed (pip install 'pbistream[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageErrors(list[str]):
    """Console errors and uncaught exceptions seen by a page."""


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; fails the test on any script error or CSP report.

    List a server fixture before ``page`` in a test's arguments, so the page closes (and
    its live feed with it) before the server stops.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.errors = errors
    page.allowed_errors = ["401"]  # a test may add messages it expects
    try:
        yield page
    finally:
        context.close()
    # A 401 before login is expected; anything else (a CSP violation, a JS error) is a bug.
    unexpected = [e for e in errors if not any(a in e for a in page.allowed_errors)]
    assert not unexpected, unexpected


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def serve_on_port() -> Any:
    """``with serve_on_port(settings) as server:`` a server that can restart on its port."""
    return _serve_on_port


@contextmanager
def _serve_on_port(settings: Any) -> Iterator[RunningServer]:
    """Like ``pbistream.testing.serve_in_thread`` but on ``settings.port`` with uvicorn's own
    socket (SO_REUSEADDR), so a restart can take the same port back at once."""
    import uvicorn

    from pbistream.server import create_app
    from pbistream.storage import open_storage

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    storage = open_storage(settings.storage_url)
    app = create_app(settings, storage)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="pbistream-browser-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert server.started, "the test server did not start"
        yield RunningServer(
            url=f"http://127.0.0.1:{settings.port}",
            token=app.state.settings.token,
            settings=app.state.settings,
            storage=storage,
            app=app,
        )
    finally:
        server.should_exit = True
        thread.join(20)
        storage.close()
