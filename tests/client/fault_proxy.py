"""A small fault-injecting HTTP proxy on 127.0.0.1, in front of the real server.

Real HTTP on real sockets: the client under test talks to the proxy exactly as it would
to Power BI; the proxy forwards to the real pbistream server, or misbehaves on purpose
for the next requests in its fault queue:

* ``"500"`` / ``"503"``: answer that status without forwarding;
* ``"429"``: answer 429 with ``Retry-After`` (seconds, ``retry_after``) without forwarding;
* ``"reset"``: reset the connection (TCP RST) without forwarding;
* ``"store_then_reset"``: forward (the server stores the rows), then reset instead of
  answering, so the client cannot know it succeeded: its retry must not store twice.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import deque
from typing import Any

import httpx


class FaultProxy:
    """Forwards to ``upstream``; misbehaves for each fault queued with :meth:`inject`."""

    def __init__(self, upstream: str, *, retry_after: int = 1) -> None:
        self.upstream = upstream.rstrip("/")
        self.retry_after = retry_after
        self.faults: deque[str] = deque()
        self.seen: list[str] = []  # what happened to each POST, in order
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self.port = 0
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests, one each."""
        with self._lock:
            self.faults.extend(faults)

    def rewrite(self, server_url: str) -> str:
        """A server URL, pointing at the proxy instead."""
        return server_url.replace(self.upstream, self.url)

    def close(self) -> None:
        """Stop the proxy."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._http = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                fault = self._next_fault() if method == "POST" else None
                if method == "POST":
                    self.seen.append(fault or "ok")
                if fault == "reset":
                    self._reset(writer)
                    return
                if fault in ("500", "503"):
                    await self._answer(writer, int(fault), b'{"error":{"code":"Injected"}}', {})
                    continue
                if fault == "429":
                    await self._answer(
                        writer,
                        429,
                        b'{"error":{"code":"TooManyRequests","message":"injected"}}',
                        {"Retry-After": str(self.retry_after)},
                    )
                    continue
                forward = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
                response = await self._http.request(method, target, content=body, headers=forward)
                if fault == "store_then_reset":
                    self._reset(writer)
                    return
                await self._answer(writer, response.status_code, response.content, {})
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, Any]
    ) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        await writer.drain()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends a RST, as a dropped connection would.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
