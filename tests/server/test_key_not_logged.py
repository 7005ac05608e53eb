"""A push key never reaches the server's log, however the query string is mangled (#8 item 6)."""

from __future__ import annotations

from pathlib import Path

import httpx

from pbistream.testing import ServerProcess, free_port


def test_malformed_query_strings_never_log_the_key(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", port=free_port())
    with server:
        created = httpx.post(
            f"{server.url}/v1.0/myorg/datasets",
            headers=server.headers,
            json={
                "name": "s",
                "defaultMode": "PushStreaming",
                "tables": [
                    {"name": "RealTimeData", "columns": [{"name": "v", "dataType": "Int64"}]}
                ],
            },
        )
        assert created.status_code == 201, created.text
        dataset_id = created.json()["id"]
        with httpx.Client(base_url=server.url, headers=server.headers) as client:
            push_url = client.get(f"/api/datasets/{dataset_id}").json()["pushUrl"]
        key = push_url.split("?key=")[1]
        path = f"/beta/W/datasets/{dataset_id}/rows"
        for query in (
            f"a=1?key={key}",
            f"a=1;key={key}",
            f"a=1%26key%3D{key}",
            f"a=b=c?key={key}?x",
            f"%6Bey={key}",
            f"key={key}",
            f"a=1key={key}",  # no separator before the name: only the known key catches it
            f"x={key}",
            f"{key}",
            f"ctid=t&k%65y%3D{key}",
        ):
            # Raw target: httpx would re-encode some of these characters.
            response = httpx.post(f"{server.url}{path}?{query}", json=[{"v": 1}])
            assert response.status_code in (200, 403), response.text
    log = server.log_text()
    assert path in log  # the requests were logged...
    assert key not in log  # ...without the key
    assert server.token not in log
