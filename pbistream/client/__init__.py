"""The pbistream client: batch, pace, retry and spool rows for Power BI.

``Client`` (a worker thread) and ``AsyncClient`` (an asyncio task) drive one sans-I/O
engine (:mod:`pbistream.client.engine`) and send through a sink
(:mod:`pbistream.client.sinks`).
"""

from __future__ import annotations

from pbistream.client._async import AsyncClient
from pbistream.client._sync import Client
from pbistream.client._types import ClientState, ClientStats, DeadLetter, DeliveryProgress
from pbistream.client.options import BatchOptions, BufferOptions, PacingOptions, RetryOptions
from pbistream.client.sinks import AsyncPushUrlSink, AsyncRestApiSink, PushUrlSink, RestApiSink

__all__ = [
    "AsyncClient",
    "AsyncPushUrlSink",
    "AsyncRestApiSink",
    "BatchOptions",
    "BufferOptions",
    "Client",
    "ClientState",
    "ClientStats",
    "DeadLetter",
    "DeliveryProgress",
    "PacingOptions",
    "PushUrlSink",
    "RestApiSink",
    "RetryOptions",
]
