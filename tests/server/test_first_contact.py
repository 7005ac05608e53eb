"""First contact (issue #8): what a new user meets starting ``pbistream serve`` and ``demo``.

Real processes on loopback, real signals: a busy port, the first start's login link,
a data dir the user may not write, SIGTERM, and the sign-in page's form.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from pbistream.testing import RunningServer, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and users")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PBISTREAM_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Running:
    """A ``python -m pbistream ...`` subprocess whose output is read line by line."""

    def __init__(self, args: list[str], **popen: object) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pbistream", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,  # type: ignore[call-overload]
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.output.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        pytest.fail(f"no line matched {pattern!r}; output:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_serve_on_a_busy_port_fails_in_one_line_before_making_anything(
    busy_port: int, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "pbistream", "serve", "--port", str(busy_port), "--data-dir", data],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 1
    assert result.stdout == ""  # no URL, no token printed
    assert result.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{busy_port} (Address already in use); "
        "try another --port"
    )
    assert not data.exists(), "the data dir (and a token in it) was made anyway"


def test_first_start_prints_the_login_link_and_later_starts_say_how_to_get_a_new_token(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    args = ["serve", "--port", str(port), "--data-dir", str(data)]
    first = Running(args, env=_env())
    try:
        link = first.wait_for(r"(http://127\.0\.0\.1:\d+/login\?token=\S+)").group(1)
        first.wait_for(r"Application startup complete")  # its SIGTERM handler is set
        with httpx.Client(trust_env=False, timeout=10, follow_redirects=True) as browser:
            signed_in = browser.get(link)
            assert signed_in.status_code == 200  # followed to /ui/, the app's shell
            assert str(signed_in.url).endswith("/ui/")
            assert "pbistream_session" in browser.cookies
    finally:
        assert first.stop() == 0
    assert "Lost the token? pbistream token rotate --data-dir" in first.text()
    again = Running(args, env=_env())
    try:
        again.wait_for(r"Sign in at http://127\.0\.0\.1:\d+/login with the API token")
        again.wait_for(r"pbistream token rotate --data-dir " + re.escape(str(data)))
        again.wait_for(r"Application startup complete")
    finally:
        assert again.stop() == 0
    assert "/login?token=" not in again.text()  # the token is shown once


def _without_root_override() -> dict[str, object]:
    """As root, run the child without the right to ignore file permissions.

    Root passes every permission check through CAP_DAC_OVERRIDE (and
    CAP_DAC_READ_SEARCH); dropping both from the child's bounding set before ``exec``
    makes it meet permissions as any user would, while it can still run our Python.
    """
    if os.geteuid() != 0:
        return {}
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:
        for cap in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return {"preexec_fn": drop}


@pytest.mark.parametrize(
    ("command", "case"),
    [("serve", "cannot-create"), ("serve", "not-writable"), ("demo", "not-writable")],
)
def test_a_data_dir_without_write_permission_is_one_clear_line(command: str, case: str) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="pbistream-perm-"))
    try:
        root.chmod(0o755)
        locked = root / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        data = locked / "data" if case == "cannot-create" else locked
        result = subprocess.run(
            [sys.executable, "-m", "pbistream", command, "--port", "0", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(HOME=str(root)),
            cwd=root,
            **_without_root_override(),  # type: ignore[call-overload]
        )
    finally:
        (root / "locked").chmod(0o755)
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert str(data) in lines[0]
    assert "permission" in lines[0].lower() or "writable" in lines[0].lower()


def test_demo_stopped_with_sigterm_says_so_and_deletes_its_temp_dir(tmp_path: Path) -> None:
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    demo = Running(
        ["demo", "--port", "0", "--rate", "20"],
        env=_env(TMPDIR=str(temp_root), PBISTREAM_TOKEN="x" * 32),
    )
    try:
        demo.wait_for(r"Press Ctrl-C to stop")
        made = list(temp_root.iterdir())
        assert len(made) == 1 and made[0].name.startswith("pbistream-demo-")
    finally:
        code = demo.stop(signal.SIGTERM)
    text = demo.text()
    assert code == 0, text
    assert "pbistream demo stopped." in text
    assert re.search(r"Stopped by SIGTERM; pushed [\d,]+ readings; deleted the temporary", text)
    assert "Traceback" not in text
    assert list(temp_root.iterdir()) == [], "the demo left its temporary directory"


def test_serve_stopped_with_sigterm_exits_zero(tmp_path: Path) -> None:
    serve = Running(
        ["serve", "--port", "0", "--data-dir", str(tmp_path / "d")],
        env=_env(PBISTREAM_TOKEN="y" * 32),
    )
    try:
        serve.wait_for(r"Application startup complete")
    finally:
        code = serve.stop(signal.SIGTERM)
    assert code == 0, serve.text()
    assert "Traceback" not in serve.text()


# --- the sign-in page's form ---------------------------------------------------------


def _sign_in_page(browser: httpx.Client) -> str:
    page = browser.get("/login")
    assert page.status_code == 200
    assert 'method="post" action="/login"' in page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_the_sign_in_form_accepts_a_pasted_token(pbistream_server: RunningServer) -> None:
    with httpx.Client(base_url=pbistream_server.url, trust_env=False) as browser:
        csrf = _sign_in_page(browser)
        origin = {"Origin": pbistream_server.url}
        answer = browser.post(
            "/login",
            data={"token": pbistream_server.token, "csrf": csrf, "next": "/ui/#/dashboards"},
            headers=origin,
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/#/dashboards"
        assert "pbistream_session" in answer.cookies
        assert browser.get("/api/datasets").status_code == 200  # signed in by the cookie


@pytest.mark.parametrize("attack", ["wrong-token", "no-csrf", "wrong-csrf", "other-origin"])
def test_the_sign_in_form_refuses_bad_tokens_and_cross_site_posts(
    pbistream_server: RunningServer, attack: str
) -> None:
    with httpx.Client(base_url=pbistream_server.url, trust_env=False) as browser:
        csrf = _sign_in_page(browser)
        form = {"token": pbistream_server.token, "csrf": csrf}
        headers = {"Origin": pbistream_server.url}
        if attack == "wrong-token":
            form["token"] += "x"
        elif attack == "no-csrf":
            del form["csrf"]
        elif attack == "wrong-csrf":
            form["csrf"] = "forged"
        else:
            headers = {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}
        answer = browser.post("/login", data=form, headers=headers)
        assert answer.status_code == 403
        assert "pbistream_session" not in answer.cookies
        assert 'method="post"' in answer.text  # the form again, to retry
        assert pbistream_server.token not in answer.text
