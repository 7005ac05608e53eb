"""The MQTT bridge: subscribe, turn payloads into rows, commit them, then acknowledge.

At least once, end to end:

* It subscribes at QoS 1 on a persistent MQTT 5 session (clean start off, a session
  expiry), so the broker keeps the messages it has not been acknowledged while the
  bridge is away.
* Messages are acknowledged by hand (paho's ``manual_ack``) and only after the rows
  they carry are committed to the spool: ``Client.push()`` returns after the commit.
  Messages are committed in groups (everything that arrived while the previous group
  was being committed: one transaction each) and acknowledged in the order they came.
* A payload that is not a row is written to the dead letter with its topic and the
  reason, and acknowledged: bad input never stalls the stream.

So a bridge killed at any moment loses nothing. It may store again the messages it
had committed but not yet acknowledged: that window is one group's acknowledgements,
and the count of duplicates is reported by the tests.

paho-mqtt runs the network in its own thread and reconnects with backoff; this
module's :meth:`MqttBridge.run` is the one thread that parses, commits and acks.
"""

from __future__ import annotations

import collections
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pbistream.client import Client, DeadLetter
from pbistream.exceptions import ConfigError, PbiStreamError, SpoolError
from pbistream.feeds.payloads import PayloadError, TopicField, parse_payload, topic_values
from pbistream.redact import Secret

__all__ = ["BridgeCounts", "MqttBridge", "MqttOptions", "parse_broker_url"]

Report = Callable[..., None]  # StatusPrinter: (event, human, **fields)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://HOST[:PORT]`` (or ``mqtts://`` for TLS) → host, port, TLS.

    Raises:
        ConfigError: Not an mqtt:// or mqtts:// URL.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError(f"--broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"--broker {url!r}: the port is not a number") from None
    return parts.hostname, port, tls


@dataclass(frozen=True, kw_only=True, slots=True)
class MqttOptions:
    """How the bridge subscribes.

    Attributes:
        broker: ``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT``.
        topic: The topic filter (``sensors/+/temperature``, ``plant/#``).
        client_id: The MQTT client id; the same id resumes the same session.
        group: A shared-subscription group: subscribes to ``$share/GROUP/TOPIC``.
        topic_fields: Topic levels copied into fields.
        value_field: The field a bare-number payload goes to.
        username: MQTT user name.
        password: MQTT password.
        tls: Use TLS (also implied by ``mqtts://``).
        cafile: CA bundle to verify the broker with.
        certfile: Client certificate (mutual TLS).
        keyfile: The client certificate's key.
        insecure: Do not verify the broker's certificate (testing only).
        session_expiry: Seconds the broker keeps the session (and its messages) while
            the bridge is away.
        receive_maximum: Unacknowledged messages the broker may send at once; it also
            bounds the bridge's memory and a group's size.
        keepalive: Seconds between pings.
        reconnect_min: First reconnect delay, doubled up to ``reconnect_max``.
        reconnect_max: Longest reconnect delay.
    """

    broker: str
    topic: str
    client_id: str
    group: str | None = None
    topic_fields: tuple[TopicField, ...] = ()
    value_field: str | None = None
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False
    session_expiry: float = 7 * 86_400.0
    receive_maximum: int = 5_000
    keepalive: int = 30
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0

    @property
    def subscription(self) -> str:
        """The filter subscribed to (``$share/GROUP/FILTER`` in a group)."""
        return f"$share/{self.group}/{self.topic}" if self.group else self.topic


@dataclass(slots=True)
class BridgeCounts:
    """What the bridge has done since it started (status lines show these).

    Attributes:
        received: Messages received from the broker.
        acked: Messages acknowledged (their rows committed, or dead-lettered).
        rows: Rows committed to the spool.
        rejected: Messages (or array elements) written to the dead letter.
        connects: Successful connections (1 + reconnections).
        commits: Spool transactions.
    """

    received: int = 0
    acked: int = 0
    rows: int = 0
    rejected: int = 0
    connects: int = 0
    commits: int = 0
    first_at: float | None = field(default=None, repr=False)
    last_at: float | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "received": self.received,
            "acked": self.acked,
            "rows": self.rows,
            "rejected": self.rejected,
            "connects": self.connects,
            "commits": self.commits,
        }


class _Message:
    """The parts of a paho message the bridge keeps (not the paho object itself)."""

    __slots__ = ("epoch", "mid", "payload", "qos", "topic")

    def __init__(self, mid: int, qos: int, topic: str, payload: bytes, epoch: int) -> None:
        self.mid, self.qos, self.topic, self.payload = mid, qos, topic, payload
        self.epoch = epoch  # the broker session it came in (see MqttBridge._epoch)


class MqttBridge:
    """Subscribe to a broker and commit each message's rows to ``client``'s spool.

    Args:
        options: Broker, topic and session settings.
        client: A :class:`~pbistream.Client` with a spool (its ``push()`` commits).
        report: Status sink ``(event, human, **fields)`` (a StatusPrinter).

    Raises:
        ConfigError: ``client`` has no spool, or the options are unusable.
    """

    def __init__(self, options: MqttOptions, client: Client, report: Report) -> None:
        if client.spool is None:
            raise ConfigError("the MQTT bridge needs a client with a spool (acks follow commits)")
        self.options = options
        self.client = client
        self.report = report
        self.counts = BridgeCounts()
        self.connected = False
        self.fatal: str | None = None
        self._inbox: collections.deque[_Message] = collections.deque()
        self._arrived = threading.Condition()
        self._mqtt = self._make_mqtt()

    # --- the paho side (its network thread) ----------------------------------------

    def _make_mqtt(self) -> Any:
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise ConfigError(
                "the MQTT bridge needs the mqtt extra: pip install 'pbistream[mqtt]'"
            ) from None
        options = self.options
        host, port, tls = parse_broker_url(options.broker)
        self._host, self._port = host, port
        mqtt = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,  # acks follow the spool commit, never the arrival
            reconnect_on_failure=True,
        )
        if options.username is not None:
            password = options.password.reveal() if options.password else None
            mqtt.username_pw_set(options.username, password)
        if tls or options.tls:
            context = ssl.create_default_context(cafile=options.cafile)
            if options.certfile:
                context.load_cert_chain(options.certfile, options.keyfile)
            if options.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            mqtt.tls_set_context(context)
        mqtt.reconnect_delay_set(
            min_delay=max(1, round(options.reconnect_min)), max_delay=round(options.reconnect_max)
        )
        mqtt.on_connect = self._on_connect
        mqtt.on_disconnect = self._on_disconnect
        mqtt.on_subscribe = self._on_subscribe
        mqtt.on_message = self._on_message
        mqtt.on_connect_fail = self._on_connect_fail
        return mqtt

    def _connect_properties(self) -> Any:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(self.options.session_expiry)
        properties.ReceiveMaximum = self.options.receive_maximum
        return properties

    def _on_connect(self, mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            now = time.monotonic()
            if now - self._last_fail_report >= 10.0:  # one line per 10 s while refused
                self._last_fail_report = now
                self.report(
                    "connect_refused",
                    f"the broker {self.options.broker} refused the connection: {reason}; "
                    "retrying with backoff",
                    broker=self.options.broker,
                    reason=str(reason),
                )
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.connected = True
        self.counts.connects += 1
        if not flags.session_present:
            # A new session (first run, or the broker lost ours): message ids from the
            # old one mean other messages now, so their acks must not be sent.
            self._epoch += 1
        # Subscribing again on a resumed session is harmless; retainHandling=1 keeps
        # the broker from re-sending retained messages for an existing subscription.
        mqtt.subscribe(self.options.subscription, options=SubscribeOptions(qos=1, retainHandling=1))
        self.report(
            "connected",
            f"connected to {self.options.broker} as {self.options.client_id} "
            f"({'session resumed' if flags.session_present else 'new session'}); "
            f"subscribing to {self.options.subscription}",
            broker=self.options.broker,
            client_id=self.options.client_id,
            session_present=bool(flags.session_present),
            subscription=self.options.subscription,
        )

    def _on_subscribe(self, mqtt: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self.fatal = f"the broker refused the subscription {self.options.subscription}: "
            self.fatal += ", ".join(failed)
            with self._arrived:
                self._arrived.notify()
            return
        self.report(
            "subscribed",
            f"subscribed to {self.options.subscription} at QoS 1",
            subscription=self.options.subscription,
        )

    def _on_disconnect(self, mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stopping:
            self.report(
                "disconnected",
                f"lost the broker {self.options.broker} ({reason}); reconnecting with backoff",
                broker=self.options.broker,
                reason=str(reason),
            )

    def _on_connect_fail(self, mqtt: Any, userdata: Any) -> None:
        now = time.monotonic()
        if now - self._last_fail_report >= 10.0:  # one line per 10 s while it is down
            self._last_fail_report = now
            self.report(
                "connect_failed",
                f"cannot reach the broker {self.options.broker}; retrying with backoff",
                broker=self.options.broker,
            )

    def _on_message(self, mqtt: Any, userdata: Any, message: Any) -> None:
        with self._arrived:
            self._inbox.append(
                _Message(message.mid, message.qos, message.topic, message.payload, self._epoch)
            )
            if len(self._inbox) == 1:
                self._arrived.notify()

    # --- the bridge's own thread -------------------------------------------------------

    _stopping = False
    _last_fail_report = 0.0
    _epoch = 0

    def run(
        self,
        stop: threading.Event,
        *,
        count: int | None = None,
        status_every: float = 10.0,
    ) -> BridgeCounts:
        """Bridge until ``stop`` is set, ``count`` messages are acknowledged, or a fatal error.

        Raises:
            PbiStreamError: The broker refused the subscription.
        """
        mqtt = self._mqtt
        mqtt.connect_async(
            self._host,
            self._port,
            keepalive=self.options.keepalive,
            clean_start=False,  # resume the session: its unacknowledged messages come back
            properties=self._connect_properties(),
        )
        mqtt.loop_start()
        next_status = time.monotonic() + status_every
        try:
            while not stop.is_set() and self.fatal is None:
                if count is not None and self.counts.acked >= count:
                    break
                batch = self._take(min(0.25, max(0.0, next_status - time.monotonic())))
                if batch:
                    self._commit_and_ack(batch, stop)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + status_every
                    self._status("status")
        finally:
            self._stopping = True
            mqtt.disconnect()  # the session stays on the broker (its expiry is not 0)
            mqtt.loop_stop()
        if self.fatal is not None:
            raise PbiStreamError(self.fatal)
        return self.counts

    def _take(self, timeout: float) -> list[_Message]:
        with self._arrived:
            if not self._inbox and self.fatal is None:
                self._arrived.wait(timeout)
            batch = list(self._inbox)
            self._inbox.clear()
        if batch:
            now = time.monotonic()
            self.counts.received += len(batch)
            if self.counts.first_at is None:
                self.counts.first_at = now
        return batch

    def _rows_of(self, batch: list[_Message]) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
        rows: list[dict[str, Any]] = []
        letters: list[DeadLetter] = []
        fields, value_field = self.options.topic_fields, self.options.value_field
        for message in batch:
            try:
                found = parse_payload(message.payload, value_field)
                if fields:
                    extra = topic_values(message.topic, fields)
                    found = [{**row, **extra} for row in found]
            except PayloadError as exc:
                letters.append(_letter(message, str(exc)))
                continue
            rows.extend(found)
        return rows, letters

    def _commit_and_ack(self, batch: list[_Message], stop: threading.Event) -> None:
        rows, letters = self._rows_of(batch)
        pause = 0.5
        while True:
            try:
                # Commits before it returns; the rows are then safe from any crash.
                self.client.push(rows)
                break
            except SpoolError as exc:  # full or failing: keep the messages unacked
                self.report(
                    "spool_error",
                    f"cannot commit to the spool ({exc}); {len(batch):,} messages stay "
                    f"unacknowledged, retrying in {pause:.0f} s",
                    error=str(exc),
                )
                if stop.wait(pause):
                    return  # not acked: the broker sends them again to the next run
                pause = min(30.0, pause * 2)
        if letters:
            self.client.reject(letters)
        ack, epoch = self._mqtt.ack, self._epoch
        for message in batch:  # in arrival order, as MQTT requires
            if message.epoch == epoch:
                ack(message.mid, message.qos)
        counts = self.counts
        counts.acked += len(batch)
        counts.rows += len(rows)
        counts.rejected += len(letters)
        counts.commits += 1
        counts.last_at = time.monotonic()

    def _status(self, event: str) -> None:
        counts = self.counts.as_dict()
        stats = self.client.stats
        human = (
            f"{counts['acked']:,} messages acknowledged, {counts['rows']:,} rows spooled, "
            f"{stats.sent:,} delivered, {self.client.pending:,} pending, "
            f"{counts['rejected']:,} dead-lettered"
            + ("" if self.connected else " (broker not connected)")
        )
        self.report(
            event,
            human,
            **counts,
            delivered=stats.sent,
            pending=self.client.pending,
            dead_lettered=stats.dead_lettered,
            connected=self.connected,
        )


def _letter(message: _Message, reason: str) -> DeadLetter:
    try:
        payload: Any = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        payload = message.payload.hex()
    return DeadLetter(
        {"topic": message.topic, "payload": payload[:65_536]},
        None,
        "payload",
        None,
        f"topic {message.topic}: {reason}",
    )
