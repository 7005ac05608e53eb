"""Helpers for the client tests (imported by the test modules of this directory)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from pbistream.testing import RunningServer

#: A "minute" of the server lasts 1 s: the limits are Power BI's, the clock is fast.
TIME_SCALE = 60.0

FIELDS = {"n": "Int64", "value": "Number", "label": "Text", "ts": "DateTime"}


def metric(server_url: str, token: str, name: str, **labels: str) -> float:
    """Sum a Prometheus counter from the server's /metrics, filtered by labels."""
    text = httpx.get(
        f"{server_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def rows_of(server: RunningServer, dataset_id: str, table: str = "RealTimeData") -> list[Any]:
    """Every stored row's data, in insertion order."""
    out: list[Any] = []
    after = 0
    with server.client(timeout=30) as client:
        while True:
            page = client.get(
                f"/api/datasets/{dataset_id}/rows",
                params={"table": table, "after": after, "limit": 10_000, "order": "asc"},
            ).json()
            out.extend(r["data"] for r in page["rows"])
            if not page.get("next"):
                return out
            after = page["next"]
