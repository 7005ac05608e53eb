"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright's sync API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbistream.testing import serve_in_thread

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


def _serve_on_port(settings: Any) -> Any:
    """``serve_in_thread`` on ``settings.port``: a restart takes the same port back at once."""
    return serve_in_thread(settings)
