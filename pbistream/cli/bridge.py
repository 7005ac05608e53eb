"""``pbistream bridge mqtt``: an MQTT topic into a Power BI (or pbistream) table."""

from __future__ import annotations

import hashlib
import socket
import threading

import click

from pbistream.cli._feed_options import (
    close_timeout_option,
    feed_client_options,
    status_every_option,
    target_options,
)
from pbistream.cli._group import friendly_errors, main
from pbistream.exceptions import ConfigError, SpoolError, require_extra
from pbistream.feeds.payloads import PayloadError, parse_topic_field
from pbistream.feeds.runner import StatusPrinter, open_feed_client, stop_on_signals
from pbistream.redact import Secret

__all__ = ["bridge"]


@main.group()
def bridge() -> None:
    """Bridge a message stream into a table (MQTT).

    Example: pbistream bridge mqtt --broker mqtt://127.0.0.1:1883 --topic 'sensors/#' --to "$URL"
    """


def _default_client_id(broker: str, topic: str, group: str | None) -> str:
    key = f"{broker}|{topic}|{group or ''}"
    return f"pbistream-{socket.gethostname()[:20]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


@bridge.command("mqtt")
@click.option("--broker", required=True, help="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.")
@click.option("--topic", required=True, help="The topic filter, e.g. 'sensors/+/temperature'.")
@target_options
@click.option(
    "--client-id",
    help="The MQTT client id: the same id (and spool) resumes the session after a restart. "
    "Default: derived from the host, broker, topic and group.",
)
@click.option(
    "--topic-field",
    "topic_fields",
    multiple=True,
    metavar="NAME=LEVEL",
    help="Copy topic level LEVEL (from 0) into field NAME: --topic-field device=1. Repeatable.",
)
@click.option("--value-field", help="The field a bare-number payload goes to (e.g. value).")
@click.option("--group", help="Share the subscription in this group ($share/GROUP/TOPIC).")
@click.option("--username", envvar="PBISTREAM_MQTT_USERNAME", help="MQTT user name.")
@click.option(
    "--password",
    envvar="PBISTREAM_MQTT_PASSWORD",
    help="MQTT password. [env: PBISTREAM_MQTT_PASSWORD]",
)
@click.option("--tls", is_flag=True, help="Use TLS (implied by mqtts://).")
@click.option("--cafile", type=click.Path(exists=True, dir_okay=False), help="CA bundle (TLS).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="Client cert.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="Client key.")
@click.option("--insecure", is_flag=True, help="Do not verify the broker's certificate (tests).")
@click.option(
    "--session-expiry",
    type=float,
    default=7 * 86_400.0,
    show_default=True,
    help="Seconds the broker keeps the session and its messages while the bridge is away.",
)
@click.option(
    "--receive-maximum",
    type=click.IntRange(1, 65_535),
    default=5_000,
    show_default=True,
    help="Unacknowledged messages the broker may send at once.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after COUNT messages.")
@status_every_option
@close_timeout_option
@friendly_errors
def mqtt(
    broker: str,
    topic: str,
    target: str,
    token: str | None,
    spool: str | None,
    time_scale: float,
    no_pacing: bool,
    sequence_numbers: bool | None,
    tenant_id: str | None,
    app_id: str | None,
    client_secret: str | None,
    authority_host: str,
    as_json: bool,
    client_id: str | None,
    topic_fields: tuple[str, ...],
    value_field: str | None,
    group: str | None,
    username: str | None,
    password: str | None,
    tls: bool,
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    insecure: bool,
    session_expiry: float,
    receive_maximum: int,
    count: int | None,
    status_every: float,
    close_timeout: float,
) -> None:
    """Subscribe to an MQTT topic and push each message's rows to --to.

    Payloads: a JSON object (one row), a JSON array of objects, or a bare number
    (with --value-field). Delivery is at least once: QoS 1 on a persistent MQTT 5
    session, and a message is acknowledged to the broker only once its rows are
    committed to the spool. A payload that is not a row goes to the dead-letter file
    (SPOOL.deadletter.jsonl) with its topic and the reason, and is acknowledged.
    Restart with the same --client-id and --spool to resume; nothing is lost.
    Stops on SIGTERM or Ctrl-C.

    Example: pbistream bridge mqtt --broker mqtt://127.0.0.1 --topic 'site/+/t' --to "$URL"
    """
    require_extra("paho.mqtt.client", "mqtt")
    from pbistream.feeds.mqtt import MqttBridge, MqttOptions

    try:
        fields = tuple(parse_topic_field(spec) for spec in topic_fields)
    except PayloadError as exc:
        raise ConfigError(str(exc)) from None
    if group is not None and ("/" in group or "+" in group or "#" in group or not group):
        raise ConfigError(f"--group {group!r}: a group name has no '/', '+' or '#'")
    client_id = client_id or _default_client_id(broker, topic, group)
    options = MqttOptions(
        broker=broker,
        topic=topic,
        client_id=client_id,
        group=group,
        topic_fields=fields,
        value_field=value_field,
        username=username,
        password=Secret(password) if password else None,
        tls=tls,
        cafile=cafile,
        certfile=certfile,
        keyfile=keyfile,
        insecure=insecure,
        session_expiry=session_expiry,
        receive_maximum=receive_maximum,
    )
    report = StatusPrinter(as_json)
    client_options = feed_client_options(
        kind="mqtt",
        key=client_id,
        target=target,
        token=token,
        spool=spool,
        time_scale=time_scale,
        no_pacing=no_pacing,
        tenant_id=tenant_id,
        app_id=app_id,
        client_secret=client_secret,
        authority_host=authority_host,
        sequence_numbers=group is None if sequence_numbers is None else sequence_numbers,
    )
    try:
        client, _ = open_feed_client(client_options)
    except SpoolError as exc:
        if "in use" not in str(exc):
            raise
        # The usual cause: a second bridge on this host with the same derived id.
        raise SpoolError(
            f"{exc}: another bridge runs with client id {client_id}; give each bridge "
            "its own --client-id (and --spool), also within one --group"
        ) from None
    if not spool:
        report(
            "spool",
            f"spool: {client_options.spool} (the default for client id {client_id}; "
            "restart with the same client id to resume)",
            spool=str(client_options.spool),
            client_id=client_id,
        )
    stop = threading.Event()
    try:
        bridge_ = MqttBridge(options, client, report)
        with stop_on_signals(stop):
            counts = bridge_.run(stop, count=count, status_every=status_every)
    finally:
        left = client.close(close_timeout)
    stats = client.stats
    report(
        "stopped",
        f"stopped: {counts.acked:,} messages acknowledged, {counts.rows:,} rows spooled, "
        f"{stats.sent:,} delivered, {left:,} left in the spool {client_options.spool}, "
        f"{counts.rejected:,} dead-lettered",
        **counts.as_dict(),
        delivered=stats.sent,
        pending=left,
        dead_lettered=stats.dead_lettered,
        seconds=round((counts.last_at or 0) - (counts.first_at or 0), 3),
        spool=str(client_options.spool),
    )
