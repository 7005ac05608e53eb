"""The docs that are generated from code must be current, and every limit documented."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pbistream.limits import LIMITS

ROOT = Path(__file__).resolve().parent.parent


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_limits_doc_is_current() -> None:
    text = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    assert text == _gen_docs().limits_markdown(), "run: python scripts/gen_docs.py"


def test_every_limit_is_documented() -> None:
    text = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    for limit in LIMITS:
        assert f"`{limit.name}`" in text


def test_cli_doc_is_current() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert text == _gen_docs().cli_markdown(), "run: python scripts/gen_docs.py"
