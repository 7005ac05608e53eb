"""Redaction holds for every malformed query string (issue #8 item 6), fuzzed."""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pbistream.redact import mask_known, redact_text, redact_url

# What new_secret() produces: URL-safe base64.
KEYS = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=8, max_size=64)
# Every way a server (or a log reader) could see the name "key" and friends.
NAMES = st.sampled_from(
    [
        "key",
        "KEY",
        "Key",
        "%6Bey",
        "%6b%65%79",
        "token",
        "tok%65n",
        "sig",
        "code",
        "access_token",
        "client_secret",
        "key ",
        "+key",
    ]
)
SEPARATORS = st.sampled_from(["?", "&", ";", "?&", "&&", ";?", "%3F", "%26", "%3f", "%253F"])
EQUALS = st.sampled_from(["=", "%3D", "%3d", "=="])
QUERY_JUNK = st.text(
    alphabet=string.ascii_letters + string.digits + "?&;=%#+-_.~/:[]@!$'()*,", max_size=30
)


@settings(max_examples=400, deadline=None)
@given(
    key=KEYS,
    name=NAMES,
    sep=SEPARATORS,
    equals=EQUALS,
    before=QUERY_JUNK,
    after=QUERY_JUNK,
    path=st.sampled_from(["/beta/W/datasets/ID/rows", "http://h/x", ""]),
)
def test_a_secret_in_any_query_string_never_survives(
    key: str, name: str, sep: str, equals: str, before: str, after: str, path: str
) -> None:
    # The secret starts right after its '=': what follows it is junk, split off by
    # '&' the way a real query string ends a value.
    assume(key not in before and key not in after)
    url = f"{path}?{before}{sep}{name}{equals}{key}&{after}"
    assert key not in redact_url(url), url
    assert key not in redact_text(f"POST {url} 200"), url


def test_the_reported_reproduction() -> None:
    key = "pQ9rV2-sT_uW4xY6zA8bC0dE"
    for url in (
        f"/beta/W/datasets/ID/rows?a=1?key={key}",
        f"/beta/W/datasets/ID/rows?a=1;key={key}",
        f"/beta/W/datasets/ID/rows?a=1%26key%3D{key}",
        f"/beta/W/datasets/ID/rows??key={key}",
        f"/beta/W/datasets/ID/rows?key=={key}",
        f"/beta/W/datasets/ID/rows?a=b=c?key={key}?x",
    ):
        assert key not in redact_url(url), url


def test_harmless_urls_are_untouched() -> None:
    for url in ("/x?ctid=t&experience=power-bi&keyboard=1", "/x?a=1?b=2", "/x?monkey=1"):
        assert redact_url(url) == url


@settings(max_examples=200, deadline=None)
@given(key=KEYS, before=QUERY_JUNK, after=QUERY_JUNK)
def test_a_known_secret_is_masked_wherever_it_sits(key: str, before: str, after: str) -> None:
    url = f"/beta/W/datasets/ID/rows?{before}{key}{after}"
    assert key not in mask_known(redact_url(url), [key])
    assert mask_known("short ab", ["ab"]) == "short ab"  # too short to mask everywhere
