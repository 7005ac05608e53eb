"""The seed blog post's snippet, run verbatim with only its URL changed, and its five behaviours.

The snippet (``SEED_SNIPPET``) is the post's code with ``url = "https://api.powerbi.com/beta/ABC-XYZ"``
replaced by our Push URL; ``data`` is then replaced the way the post's notes do.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests  # noqa: F401 (the snippet imports it; fail here, not inside exec)

from pbistream.testing import RunningServer

SEED_SNIPPET = """
from datetime import datetime
import requests
import json

# copy "Push URL" from "API Info" in Power BI
url = "https://api.powerbi.com/beta/ABC-XYZ"

# timestamps should be formatted like this
now = datetime.strftime(
  datetime.now(),
  "%Y-%m-%dT%H:%M:%S"
  )

# data dict must be contained in a list
data = [
  {
    "string_value": "ABC XYZ",
    "number_value": 12345,
    "datetime_value": now
    }
  ]

# post/push data to the streaming API
headers = {
  "Content-Type": "application/json"
  }
response = requests.request(
    method="POST",
    url=url,
    headers=headers,
    data=json.dumps(data)
)
"""

FIELDS = {"string_value": "Text", "number_value": "Number", "datetime_value": "DateTime"}


def run_seed(push_url: str, data_source: str | None = None) -> Any:
    """Run the snippet with our URL (and optionally the post's other ``data = ...``)."""
    code = SEED_SNIPPET.replace("https://api.powerbi.com/beta/ABC-XYZ", push_url)
    if data_source is not None:
        start = code.index("data = [")
        end = code.index("# post/push data")
        code = code[:start] + data_source + "\n" + code[end:]
    namespace: dict[str, Any] = {}
    exec(compile(code, "seed_snippet.py", "exec"), namespace)
    return namespace["response"]


@pytest.fixture
def push_url(pbistream_server: RunningServer) -> str:
    return pbistream_server.create_streaming_dataset(FIELDS, historic=True)


def stored(server: RunningServer) -> list[dict[str, Any]]:
    dataset_id = server.storage.list_datasets()[0].id
    return [r.data for r in server.storage.read_rows(dataset_id, limit=1000)]


def test_the_snippet_as_published_gets_200(pbistream_server: RunningServer, push_url: str) -> None:
    response = run_seed(push_url)
    assert response.status_code == 200
    [row] = stored(pbistream_server)
    assert row["string_value"] == "ABC XYZ"
    assert row["number_value"] == 12345
    assert row["datetime_value"].endswith(".000Z")


def test_a_dict_not_in_a_list_gets_400(pbistream_server: RunningServer, push_url: str) -> None:
    data = 'data = {"string_value": "ABC XYZ", "number_value": 12345, "datetime_value": now}'
    assert run_seed(push_url, data).status_code == 400
    assert stored(pbistream_server) == []


def test_a_field_not_in_the_schema_gets_404(pbistream_server: RunningServer, push_url: str) -> None:
    data = (
        'data = [{"string_value": "ABC XYZ", "number_value": 12345,'
        ' "another_number_value": 789, "datetime_value": now}]'
    )
    assert run_seed(push_url, data).status_code == 404
    assert stored(pbistream_server) == []


def test_omitted_values_are_accepted(pbistream_server: RunningServer, push_url: str) -> None:
    assert run_seed(push_url, 'data = [{"number_value": 12345}]').status_code == 200
    data = 'data = [{"string_value": "ABC XYZ", "number_value": 12345}]'
    assert run_seed(push_url, data).status_code == 200
    rows = stored(pbistream_server)
    assert rows[0]["number_value"] == 12345
    assert rows[0].get("string_value") is None
    assert rows[1].get("datetime_value") is None


def test_multiple_payloads_in_one_list(pbistream_server: RunningServer, push_url: str) -> None:
    data = """data = [
  {"string_value": "ABC", "number_value": 12345, "datetime_value": now},
  {"string_value": "XYZ", "number_value": 789, "datetime_value": now},
  {"string_value": "EFG", "number_value": 852, "datetime_value": now},
]"""
    assert run_seed(push_url, data).status_code == 200
    assert [r["number_value"] for r in stored(pbistream_server)] == [12345, 789, 852]
