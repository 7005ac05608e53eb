"""`pip install pbistream` (no extras) must be enough to push: nothing heavy is imported.

Each check runs in a fresh interpreter in which the optional extras (server, pandas,
Entra ID, PostgreSQL, progress bars) cannot be imported, as on a Raspberry Pi that
installed only the client.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

EXTRAS = ("starlette", "uvicorn", "pandas", "numpy", "msal", "psycopg", "psycopg_pool", "tqdm")
EXTRAS += ("paho",)  # the mqtt extra

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class _NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {EXTRAS!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, _NoExtras())
    """
)


def run_light(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_client_imports_without_any_extra() -> None:
    result = run_light(
        """
        import pbistream
        client = pbistream.Client("http://127.0.0.1:9/beta/t/datasets/d/rows?key=k")
        print(type(client).__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Client"


def test_the_cli_helps_and_pushes_without_any_extra() -> None:
    for args in (["--help"], ["push", "--help"], ["spool", "--help"], ["dataset", "--help"]):
        result = run_light(f"from pbistream.cli import main; main({args!r})")
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage:" in result.stdout


def test_serve_without_the_server_extra_says_what_to_install() -> None:
    result = run_light('from pbistream.cli import main; main(["serve"])')
    assert result.returncode == 1
    assert "pip install 'pbistream[server]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bridge_without_the_mqtt_extra_says_what_to_install() -> None:
    for args in (["bridge", "--help"], ["bridge", "mqtt", "--help"], ["tail", "--help"]):
        result = run_light(f"from pbistream.cli import main; main({args!r})")
        assert result.returncode == 0, (args, result.stderr)
    result = run_light(
        'from pbistream.cli import main; main(["bridge", "mqtt", "--broker", "mqtt://127.0.0.1:9",'
        ' "--topic", "t", "--to", "http://127.0.0.1:9/beta/t/datasets/d/rows?key=k"])'
    )
    assert result.returncode == 1
    assert "pip install 'pbistream[mqtt]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_pytest_fixture_without_the_server_extra_says_what_to_install(
    tmp_path: Path,
) -> None:
    test_file = tmp_path / "test_mine.py"
    test_file.write_text("def test_it(pbistream_server):\n    pass\n")
    result = run_light(
        f"""
        import sys, pytest
        sys.exit(pytest.main([{str(test_file)!r}, "-q", "-p", "no:cacheprovider"]))
        """
    )
    assert result.returncode != 0
    assert "pip install 'pbistream[server]'" in result.stdout, result.stdout
    assert "ModuleNotFoundError" not in result.stdout
