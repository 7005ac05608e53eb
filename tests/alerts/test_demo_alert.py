"""`pbistream demo` shows an alert on its temperature card that fires in the first minute."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from pbistream.testing import free_port


def test_the_demo_alert_fires_within_the_first_minute(tmp_path):
    port, token = free_port(), "demo-token-" + "x" * 20
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pbistream",
            "demo",
            "--port",
            str(port),
            "--rate",
            "20",
            "--data-dir",
            str(tmp_path / "demo"),
            "--token",
            token,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    try:
        fired: list[dict] = []
        while time.monotonic() - started < 60 and not fired:
            try:
                events = httpx.get(f"{base}/api/alerts/events", headers=headers, timeout=5)
                if events.status_code == 200:
                    fired = [e for e in events.json()["value"] if e["state"] == "fired"]
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert fired, "the demo's alert did not fire within a minute"
        assert fired[-1]["name"] == "Temperature too high"
        assert fired[-1]["value"] > 28 and fired[-1]["categoryValue"] == "North"
        [rule] = httpx.get(f"{base}/api/alerts", headers=headers).json()["value"]
        assert rule["field"] == "temperature" and rule["op"] == ">"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "Alert 'Temperature too high'" in output
