"""``auth = any``: the REST API takes any non-empty Bearer token; the rest keeps the real one."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pbistream.cli import main
from pbistream.exceptions import ConfigError
from pbistream.server.settings import Settings
from pbistream.testing import RunningServer, ServerProcess

# What msal hands out looks like this: a JWT for https://analysis.windows.net/powerbi/api.
ENTRA_LIKE_TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FuYWx5c2lzLndpbmRvd3Mu"
    "bmV0L3Bvd2VyYmkvYXBpIn0.c2lnbmF0dXJl"
)
PBI = "/v1.0/myorg"


def _call(
    server: RunningServer, method: str, path: str, auth: str | None, **kwargs: object
) -> httpx.Response:
    headers = {} if auth is None else {"Authorization": auth}
    return httpx.request(method, server.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def _dataset_body() -> dict[str, object]:
    columns = [{"name": "n", "dataType": "Int64"}]
    return {"name": "msal", "defaultMode": "Push", "tables": [{"name": "T", "columns": columns}]}


def test_any_bearer_token_drives_the_whole_rest_api(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(auth="any")
    bearer = f"Bearer {ENTRA_LIKE_TOKEN}"
    created = _call(server, "POST", f"{PBI}/datasets", bearer, json=_dataset_body())
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    rows = {"rows": [{"n": 1}, {"n": 2}]}
    posted = _call(server, "POST", f"{PBI}/datasets/{dataset_id}/tables/T/rows", bearer, json=rows)
    assert posted.status_code == 200, posted.text
    # Another made-up token, in a workspace path and under /beta/myorg too.
    other = f"Bearer {secrets.token_hex(8)}"
    listed = _call(server, "GET", f"{PBI}/datasets", other)
    assert [d["id"] for d in listed.json()["value"]] == [dataset_id]
    assert _call(server, "GET", "/beta/myorg/datasets", other).status_code == 200
    assert server.count_rows(dataset_id, "T") == 2


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwdw==", "tokenonly"])
def test_any_still_needs_a_non_empty_bearer_token(
    server_factory: Callable[..., RunningServer], header: str | None
) -> None:
    server = server_factory(auth="any")
    response = _call(server, "GET", f"{PBI}/datasets", header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "PowerBINotAuthorizedException"


def test_api_metrics_and_dashboard_keep_needing_the_server_token(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(auth="any")
    fake = f"Bearer {ENTRA_LIKE_TOKEN}"
    assert _call(server, "GET", "/api/datasets", fake).status_code == 401
    assert _call(server, "GET", "/metrics", fake).status_code == 401
    assert _call(server, "GET", "/openapi.json", fake).status_code == 401
    assert _call(server, "GET", "/ui/", fake).status_code == 401  # the sign-in page
    login = httpx.get(f"{server.url}/login", params={"token": ENTRA_LIKE_TOKEN}, timeout=10)
    assert login.status_code == 403
    real = f"Bearer {server.token}"
    assert _call(server, "GET", "/api/datasets", real).status_code == 200
    assert _call(server, "GET", "/metrics", real).status_code == 200


def test_the_default_token_mode_refuses_other_tokens(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory()
    assert server.settings.auth == "token"
    assert _call(server, "GET", f"{PBI}/datasets", f"Bearer {ENTRA_LIKE_TOKEN}").status_code == 401
    assert _call(server, "GET", f"{PBI}/datasets", f"Bearer {server.token}").status_code == 200


def test_any_logs_one_warning_at_start(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pbistream.server"):
        server = server_factory(auth="any")
    warnings = [r.getMessage() for r in caplog.records if "auth=any" in r.getMessage()]
    assert len(warnings) == 1
    assert "ANY non-empty Bearer token" in warnings[0]
    assert server.token not in warnings[0]


def test_the_setting_comes_from_the_environment_and_is_checked() -> None:
    assert Settings.from_sources({}, {"PBISTREAM_AUTH": "any"}).auth == "any"
    assert Settings.from_sources({"auth": "token"}, {"PBISTREAM_AUTH": "any"}).auth == "token"
    with pytest.raises(ConfigError, match="PBISTREAM_AUTH='maybe' is not valid: use token or any"):
        Settings.from_sources({}, {"PBISTREAM_AUTH": "maybe"})


def test_serve_refuses_a_bad_auth_value_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(tmp_path)], env={"PBISTREAM_AUTH": "maybe"}
    )
    assert result.exit_code == 1
    assert "PBISTREAM_AUTH='maybe' is not valid" in result.output
    assert "Traceback" not in result.output


def test_serve_auth_any_flag_runs_the_emulator(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", args=["--auth", "any"]) as server:
        fake = {"Authorization": f"Bearer {ENTRA_LIKE_TOKEN}"}
        response = httpx.get(f"{server.url}{PBI}/datasets", headers=fake, timeout=10)
        assert response.status_code == 200
        assert httpx.get(f"{server.url}/api/datasets", headers=fake, timeout=10).status_code == 401
    log = server.log_text()
    assert log.count("auth=any: the Power BI REST API accepts ANY") == 1
    assert server.token not in log
