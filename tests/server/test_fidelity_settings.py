"""The reference's §7 open questions, each a setting: defaults and the other choice, live.

docs/compatibility.md ("Open questions, each a setting") says why each default is what
it is; these tests pin the defaults and prove the other choice takes effect.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pbistream.exceptions import ConfigError
from pbistream.server.settings import Settings
from pbistream.testing import RunningServer

FIELDS = {"n": "Int64"}
BODY = {
    "name": "s",
    "defaultMode": "PushStreaming",
    "tables": [{"name": "RealTimeData", "columns": [{"name": "n", "dataType": "Int64"}]}],
}


def test_the_defaults_follow_the_evidence() -> None:
    settings = Settings()
    assert (settings.rows_per_post_status, settings.push_key_status) == (400, 403)
    assert (settings.deprecation_status, settings.create_status) == (400, 201)
    assert (settings.sequence_numbers, settings.push_refresh) == ("dedupe", "refuse")
    assert settings.text_numbers == "convert"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PBISTREAM_ROWS_PER_POST_STATUS", "418"),
        ("PBISTREAM_PUSH_KEY_STATUS", "404"),
        ("PBISTREAM_CREATE_STATUS", "200"),
        ("PBISTREAM_SEQUENCE_NUMBERS", "sometimes"),
        ("PBISTREAM_TEXT_NUMBERS", "yes"),
        ("PBISTREAM_PUSH_REFRESH", "maybe"),
    ],
)
def test_a_choice_outside_the_allowed_ones_is_a_clear_config_error(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable}='{value}' is not valid: use "):
        Settings.from_sources({}, {variable: value})


def test_environment_values_are_read_case_insensitively() -> None:
    settings = Settings.from_sources(
        {}, {"PBISTREAM_TEXT_NUMBERS": "Refuse", "PBISTREAM_ROWS_PER_POST_STATUS": "413"}
    )
    assert (settings.text_numbers, settings.rows_per_post_status) == ("refuse", 413)


def test_the_other_statuses_take_effect(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(
        max_rows_per_post=3,
        rows_per_post_status=413,
        push_key_status=401,
        create_status=202,
    )
    with server.client() as http:
        created = http.post("/v1.0/myorg/datasets", json=BODY)
    assert created.status_code == 202, created.text
    dataset_id = created.json()["id"]
    url = server.push_url(dataset_id)
    assert url is not None
    too_many = httpx.post(url, json=[{"n": i} for i in range(4)], timeout=10)
    assert too_many.status_code == 413
    assert "at most 3 rows" in too_many.json()["error"]["message"]
    wrong_key = httpx.post(url.replace("key=", "key=x"), json=[{"n": 1}], timeout=10)
    assert wrong_key.status_code == 401
    assert server.count_rows(dataset_id) == 0


def test_the_default_statuses(pbistream_server: RunningServer) -> None:
    server = pbistream_server
    created = server.create_dataset(FIELDS, mode="PushStreaming")  # asserts the 201
    url = created["push_url"]
    too_many = httpx.post(url, json=[{"n": i} for i in range(10_001)], timeout=30)
    assert too_many.status_code == 400
    assert httpx.post(url.replace("key=", "key=x"), json=[], timeout=10).status_code == 403


@pytest.mark.parametrize(("status", "expected"), [(None, 400), (403, 403)])
def test_feature_deprecated_status(
    server_factory: Callable[..., RunningServer], status: int | None, expected: int
) -> None:
    overrides = {"deprecation_status": status} if status else {}
    server = server_factory(deprecation=True, **overrides)
    with server.client() as http:
        refused = http.post("/v1.0/myorg/datasets", json=BODY)
    assert refused.status_code == expected
    assert refused.json()["error"]["code"] == "FeatureDeprecatedError"


@pytest.mark.parametrize(("mode", "stored"), [("dedupe", 1), ("ignore", 2)])
def test_sequence_numbers_dedupe_or_ignore(
    server_factory: Callable[..., RunningServer], mode: str, stored: int
) -> None:
    server = server_factory(sequence_numbers=mode)
    created = server.create_dataset(FIELDS, mode="PushStreaming")
    headers = {"X-PowerBI-PushData-SequenceNumber": "7"}
    for _ in range(2):  # a retry of the same numbered request
        sent = httpx.post(created["push_url"], json=[{"n": 1}], headers=headers, timeout=10)
        assert sent.status_code == 200, sent.text
    assert server.count_rows(created["id"]) == stored
