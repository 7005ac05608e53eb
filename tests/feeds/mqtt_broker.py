"""A private Mosquitto for the feed tests and the bridge benchmark.

The machine's broker keeps 1,000 queued messages per offline session (Mosquitto's
default ``max_queued_messages``) and drops the rest, which would hide or fake a loss
in a test that kills the bridge. This one has no queue cap and listens on a free
loopback port; ``persistence`` makes it keep sessions across a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pbistream.testing import free_port


def mosquitto_or_skip() -> str:
    """The mosquitto binary; skip (fail under CI=true) when it is missing."""
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if path is None:
        reason = "the mosquitto binary is not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    return path


class Broker:
    """``mosquitto -c CONFIG`` on 127.0.0.1:PORT, with start, stop (SIGTERM) and restart."""

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: bool = False,
        binary: str = "mosquitto",
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ):
        """``users``: name → password (anonymous access is then off); ``tls``: cert, key."""
        self.workdir = workdir
        self.port = free_port()
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.binary = binary
        self.config = workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if users else 'true'}",
            "max_queued_messages 0",  # no cap: an offline session keeps everything
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "autosave_interval 0",  # persistence saves on shutdown (SIGTERM)
            f"log_dest file {workdir}/mosquitto.log",
        ]
        if tls:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            passwords = workdir / "passwords"
            passwords.write_text("")
            for name, password in users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), name, password],
                    check=True,
                    capture_output=True,
                )
            lines.append(f"password_file {passwords}")
        if os.geteuid() == 0:  # else mosquitto becomes user "mosquitto": no access to workdir
            lines.append("user root")
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Broker:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
