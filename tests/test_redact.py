"""Secrets never survive redaction, however the URL spells their names."""

from __future__ import annotations

import pytest

from pbistream.redact import Secret, constant_time_equal, redact_text, redact_url

KEY = "s3cr3t-KEY_value"


@pytest.mark.parametrize(
    "url",
    [
        f"http://h/beta/t/datasets/d/rows?key={KEY}",
        f"http://h/beta/t/datasets/d/rows?ctid=abc&key={KEY}&experience=power-bi",
        f"http://h/x?KEY={KEY}",
        f"http://h/x?tok%65n={KEY}",  # percent-encoded name: the server decodes it
        f"http://h/x?%6Bey={KEY}",
        f"http://h/x?a=1;access_token={KEY}",
        f"http://h/x?client_secret={KEY}#frag",
    ],
)
def test_secret_query_values_are_masked(url: str) -> None:
    redacted = redact_url(url)
    assert KEY not in redacted
    assert "REDACTED" in redacted


def test_other_query_values_are_kept() -> None:
    url = "http://h/x?ctid=tenant&experience=power-bi&keyboard=1"
    assert redact_url(url) == url


def test_bearer_tokens_in_text_are_masked() -> None:
    text = f"GET http://h/x?key={KEY} with Authorization: Bearer {KEY}.abc"
    redacted = redact_text(text)
    assert KEY not in redacted
    assert redacted.count("REDACTED") == 2


def test_secret_repr_is_masked_and_comparison_constant_time() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret)
    assert secret.reveal() == KEY
    assert secret == Secret(KEY) and secret != Secret("other")
    assert constant_time_equal(KEY, KEY) and not constant_time_equal(KEY, None)
