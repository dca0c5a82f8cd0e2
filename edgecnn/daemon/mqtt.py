"""Publish predictions to MQTT (paho-mqtt) when the top class changes or on an interval.

paho's network thread connects in the background and reconnects with
backoff, so a broker that is down never blocks classification: messages
published while disconnected are counted as dropped (QoS 0) or queued by
paho (QoS 1/2, bounded). A retained `<topic>/status` says online/offline.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from edgecnn.daemon.pipeline import Result
from edgecnn.errors import BadInput

log = logging.getLogger("edgecnn.daemon.mqtt")


class MqttPublisher:
    def __init__(
        self,
        host: str,
        port: int = 1883,
        topic: str = "edgecnn/predictions",
        interval: float = 0.0,
        qos: int = 0,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        backoff: tuple[int, int] = (1, 10),
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise BadInput("MQTT output needs paho-mqtt: pip install 'edgecnn[device]'") from None
        if qos not in (0, 1, 2):
            raise BadInput(f"--mqtt-qos must be 0, 1 or 2, not {qos}")
        if not topic or "#" in topic or "+" in topic:
            raise BadInput(f"bad MQTT topic {topic!r} (no wildcards)")
        self.topic = topic
        self.status_topic = f"{topic}/status"
        self.interval = float(interval)
        self.qos = qos
        self.host, self.port = host, int(port)
        self.published = 0
        self.dropped = 0
        self.connected = threading.Event()
        self._last_label: Any = object()
        self._last_t = 0.0
        self._attempts = 0
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edgecnn-{socket.gethostname()}",
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_queued_messages_set(100)
        self.client.reconnect_delay_set(*backoff)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail

    def start(self) -> None:
        log.info("MQTT: connecting to %s:%d (topic %s)", self.host, self.port, self.topic)
        try:
            self.client.connect_async(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise BadInput(f"bad MQTT broker {self.host}:{self.port}: {e}") from None
        self.client.loop_start()

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning(
                "MQTT: broker %s:%d refused the connection: %s", self.host, self.port, reason
            )
            return
        self._attempts = 0
        self.connected.set()
        log.info("MQTT: connected to %s:%d", self.host, self.port)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._last_label = object()  # republish the current state after a reconnect

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was:
            log.warning(
                "MQTT: disconnected from %s:%d (%s); reconnecting", self.host, self.port, reason
            )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._attempts += 1
        log.warning(
            "MQTT: cannot reach broker %s:%d (attempt %d); retrying",
            self.host,
            self.port,
            self._attempts,
        )

    def __call__(self, res: Result) -> None:
        """Pipeline listener: publish on a top-class change, or when the interval elapsed."""
        now = time.monotonic()
        changed = res.label != self._last_label
        due = self.interval > 0 and now - self._last_t >= self.interval
        if not (changed or due):
            return
        self._last_label = res.label
        self._last_t = now
        if not self.connected.is_set() and self.qos == 0:
            self.dropped += 1
            return
        payload = json.dumps({**res.to_json(), "reason": "change" if changed else "interval"})
        info = self.client.publish(self.topic, payload, qos=self.qos)
        if info.rc == 0:
            self.published += 1
        else:
            self.dropped += 1

    def stop(self) -> None:
        try:
            if self.connected.is_set():
                self.client.publish(self.status_topic, "offline", qos=0, retain=True)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
