"""Tile alerts: rules on a dataset field, their incremental evaluation and notifications.

* :mod:`~pbistream.server.alerts.rules`: what a rule is, and checking one from JSON.
* :mod:`~pbistream.server.alerts.evaluator`: the pure, clock-injected evaluation
  (cost per row, not per rule per row).
* :mod:`~pbistream.server.alerts.notify`: webhook payloads (plain JSON, Teams, Slack)
  and their HMAC signature.
* :mod:`~pbistream.server.alerts.service`: the evaluator thread fed after each commit,
  the stored history and the webhook outbox with retries.
* :mod:`~pbistream.server.alerts.routes`: ``/api/alerts``.
"""
