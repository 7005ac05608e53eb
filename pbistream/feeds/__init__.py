"""Feeds: every path from a source into the client (MQTT, a file, a command, a dataset's rows)."""
