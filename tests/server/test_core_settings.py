"""Settings: one table, CLI flag > PBISTREAM_* variable > default, clear cast errors."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from pbistream import limits
from pbistream.cli import main
from pbistream.exceptions import ConfigError
from pbistream.server.settings import SETTINGS, Settings


def test_every_field_is_in_the_settings_table_with_help() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields == {s.name for s in SETTINGS}
    assert all(s.help.strip() for s in SETTINGS)


def test_limit_defaults_come_from_the_limits_table() -> None:
    settings = Settings()
    for limit in limits.LIMITS:
        if hasattr(settings, limit.name):
            assert getattr(settings, limit.name) == limit.value, limit.name


def test_precedence_flag_then_environment_then_default() -> None:
    environ = {"PBISTREAM_TIME_SCALE": "60", "PBISTREAM_PORT": "9000", "PBISTREAM_LIMITS": "off"}
    settings = Settings.from_sources({"port": 9100, "host": None}, environ)
    assert settings.port == 9100  # the flag wins
    assert settings.time_scale == 60.0  # from the environment
    assert settings.limits is False
    assert settings.host == "127.0.0.1"  # the default


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PBISTREAM_TIME_SCALE", "fast", "PBISTREAM_TIME_SCALE='fast' is not valid"),
        ("PBISTREAM_TIME_SCALE", "0", "positive"),
        ("PBISTREAM_LIMITS", "maybe", "use on or off"),
        ("PBISTREAM_UNKNOWN_FIELDS", "500", "use 404, 400 or ignore"),
        ("PBISTREAM_PORT", "70000", "between 0 and 65535"),
        ("PBISTREAM_MAX_ROWS_PER_POST", "-1", "positive"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_sources({}, {name: value})


def test_fifo_band_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="fifo_min_rows"):
        Settings(fifo_min_rows=10, fifo_max_rows=5)


def test_time_scale_divides_windows() -> None:
    assert Settings(time_scale=60).scaled(60) == 1.0


def test_token_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(Settings(token="s3cret"))


def test_serve_help_explains_the_host_default() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "127.0.0.1 keeps the server private" in " ".join(result.output.split())
    for flag in ("--port", "--data-dir", "--token", "--limits", "--time-scale", "--storage"):
        assert flag in result.output


def test_serve_with_a_bad_environment_value_is_one_red_line() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"PBISTREAM_TIME_SCALE": "fast"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: PBISTREAM_TIME_SCALE='fast' is not valid: could not convert string to float: 'fast'"
    ]


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    server_md = (docs / "server.md").read_text(encoding="utf-8")
    limits_md = (docs / "limits.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"`{setting.name}`" in server_md or f"`{setting.name}`" in limits_md, setting.name


def test_typed_flags_are_checked_like_environment_values() -> None:
    with pytest.raises(ConfigError, match="--port='70000' is not valid"):
        Settings.from_sources({"port": 70000}, {})
    assert Settings.from_sources({"limits": False, "time_scale": 60.0}, {}).limits is False


def test_serve_with_a_bad_port_flag_is_one_red_line() -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "70000"])
    assert result.exit_code == 1
    assert "--port='70000' is not valid" in result.output
