"""The alerts' part of ``/metrics``: firing state per rule, notifications, deliveries."""

from __future__ import annotations

from pbistream.server.alerts.service import AlertService
from pbistream.server.metrics import escape_label

__all__ = ["render_alerts"]


def render_alerts(service: AlertService) -> str:
    """Prometheus exposition lines for the alerts (ends with a newline)."""
    snap = service.snapshot()
    lines: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")

    family("pbistream_alert_rules", "gauge", "Alert rules kept by the server.")
    lines.append(f"pbistream_alert_rules {len(snap['rules'])}")
    family(
        "pbistream_alert_firing",
        "gauge",
        "1 while an alert rule's condition holds (for any category value), else 0.",
    )
    for rule_id, rule in sorted(snap["rules"].items()):
        labels = f'rule="{escape_label(rule_id)}",dataset="{escape_label(rule.dataset)}"'
        lines.append(
            f"pbistream_alert_firing{{{labels}}} {1 if snap['firing'].get(rule_id) else 0}"
        )
    family(
        "pbistream_alert_firing_categories",
        "gauge",
        "Category values whose condition holds now, per alert rule.",
    )
    for rule_id, count in sorted(snap["firing"].items()):
        lines.append(f'pbistream_alert_firing_categories{{rule="{escape_label(rule_id)}"}} {count}')
    family(
        "pbistream_alert_notifications_total",
        "counter",
        "Notifications fired since the server started, per alert rule.",
    )
    for rule_id, count in sorted(snap["notifications"].items()):
        lines.append(
            f'pbistream_alert_notifications_total{{rule="{escape_label(rule_id)}"}} {count}'
        )
    family(
        "pbistream_alert_webhook_attempts_total",
        "counter",
        "Webhook POSTs by result: sent, retry (will be tried again), failed (given up).",
    )
    for result, count in sorted(snap["deliveries"].items()):
        lines.append(f'pbistream_alert_webhook_attempts_total{{result="{result}"}} {count}')
    family(
        "pbistream_alert_rows_skipped_total",
        "counter",
        "Rows not evaluated because the alert queue was full.",
    )
    lines.append(f"pbistream_alert_rows_skipped_total {snap['rows_skipped']}")
    return "\n".join(lines) + "\n"
