"""What a notification says, and how a receiver knows it came from this server.

A webhook body is plain JSON by default (every field a script needs: ``rule``,
``dataset``, ``field``, ``value``, ``firedAt`` ...), or shaped for a Microsoft Teams
or Slack incoming webhook. Every POST is signed: ``X-PBIStream-Signature:
sha256=<hex>`` is the HMAC-SHA256, keyed with the rule's secret, of
``<X-PBIStream-Timestamp>.<body>``; a receiver recomputes it, compares in constant
time and refuses old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "event_payload",
    "sign",
    "verify",
    "webhook_body",
]

SIGNATURE_HEADER = "X-PBIStream-Signature"
TIMESTAMP_HEADER = "X-PBIStream-Timestamp"


_OP_WORDS = {
    ">": "above",
    ">=": "at or above",
    "<": "below",
    "<=": "at or below",
    "=": "equal to",
    "!=": "not",
}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def iso(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-12-01T16:00:00.123Z``)."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def event_payload(
    rule: dict[str, Any],
    *,
    event_id: int,
    at: float,
    value: Any,
    category_value: Any,
    row_id: int | None,
    last_seen: float | None,
    dataset_name: str,
) -> dict[str, Any]:
    """The plain JSON notification (also what the UI's notification list shows)."""
    kind = "silence" if rule.get("silenceSeconds") is not None else "threshold"
    where = f" for {rule['category']} = {category_value}" if rule.get("category") else ""
    if kind == "silence":
        ago = f"{at - last_seen:.0f} s" if last_seen is not None else "a while"
        message = f"No {rule['field']} from {dataset_name}{where} for {ago}."
    else:
        words = _OP_WORDS.get(rule.get("op") or "", rule.get("op"))
        message = (
            f"{rule['field']} is {_show(value)}{where} on {dataset_name} "
            f"({words} {_show(rule.get('threshold'))})."
        )
    return {
        "rule": rule["id"],
        "name": rule.get("name", ""),
        "event": event_id,
        "kind": kind,
        "dataset": rule["dataset"],
        "datasetName": dataset_name,
        "table": rule["table"],
        "field": rule["field"],
        "op": rule.get("op"),
        "threshold": rule.get("threshold"),
        "value": value,
        "category": rule.get("category"),
        "categoryValue": category_value,
        "rowId": row_id,
        "lastSeenAt": iso(last_seen) if last_seen is not None else None,
        "firedAt": iso(at),
        "message": message,
    }


def webhook_body(payload: dict[str, Any], fmt: str) -> bytes:
    """The bytes POSTed for one notification in the rule's format."""
    if fmt == "slack":
        # Slack incoming webhooks: `text` is shown; mrkdwn bold for the title.
        return orjson.dumps({"text": f"*pbistream alert: {payload['name']}*\n{payload['message']}"})
    if fmt == "teams":
        # Teams (Workflows / incoming webhook): a message with one Adaptive Card.
        facts = [
            {"title": "Dataset", "value": str(payload["datasetName"])},
            {"title": "Field", "value": str(payload["field"])},
            {"title": "Value", "value": str(payload["value"])},
            {"title": "Fired at", "value": str(payload["firedAt"])},
        ]
        card = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "size": "Medium",
                    "weight": "Bolder",
                    "wrap": True,
                    "text": f"pbistream alert: {payload['name']}",
                },
                {"type": "TextBlock", "wrap": True, "text": payload["message"]},
                {"type": "FactSet", "facts": facts},
            ],
        }
        return orjson.dumps(
            {
                "type": "message",
                "attachments": [
                    {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
                ],
            }
        )
    return orjson.dumps(payload)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-PBIStream-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is this server's for ``body`` (constant-time compare)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
