"""A real HTTP receiver on loopback that records webhook POSTs (Teams/Slack stand-in)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST; answers ``status`` (settable) so tests can make it fail."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with owner._lock:
                    owner.posts.append(
                        {
                            "body": body,
                            "headers": dict(self.headers),
                            "at": time.time(),
                            "status": owner.status,
                        }
                    )
                    status = owner.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def accepted(self) -> list[dict[str, Any]]:
        """The JSON bodies of POSTs answered with a 2xx."""
        with self._lock:
            return [json.loads(p["body"]) for p in self.posts if 200 <= p["status"] < 300]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.accepted()
            if len(got) >= n:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {n} accepted webhook POSTs, got {self.accepted()}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
