"""Publish predictions to MQTT (paho-mqtt) when the top class changes or on an interval.

paho's network thread connects in the background, so a broker that is down
never blocks classification. Its reconnect delay is set before every attempt
from our `Backoff` (capped at a few seconds, jittered; paho's own doubles with
no jitter). Messages published while disconnected fail (QoS 0, counted) or wait
in paho's bounded queue (QoS 1/2, sent on reconnect). When the broker accepts
the daemon, the current result (if any) is published again with `"reason":
"connect"` (the first time) or `"reconnect"` (after a loss), never as "change".
A retained `<topic>/status` says online/offline.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any

from edgecnn.daemon.backoff import Backoff
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
        backoff: Backoff | None = None,
        queue: int = 1000,
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
        self.dropped = 0  # publish failures: broker away at QoS 0, or the queue full
        self.attempts = 0  # connection attempts that failed or dropped
        self.connected = threading.Event()
        self.backoff = backoff or Backoff(initial=0.5, cap=2.0)
        self._last_label: Any = object()
        self._last_res: Result | None = None
        self._last_t = 0.0
        self._ever_connected = False
        self._pending: set[int] = set()  # mids handed to paho, not yet sent/acknowledged
        self._early: set[int] = set()  # mids paho reported done before publish() returned
        self._lock = threading.Lock()
        # Orders the connect announcement before any "change" from the pipeline thread:
        # without it a change published just after `connected` is set overtook it.
        # Held around publish(); paho never holds a lock we take here while waiting on it.
        self._send_lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"edgecnn-{socket.gethostname()}",
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_queued_messages_set(max(1, int(queue)))
        self._arm(self.backoff.initial)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish

    def _arm(self, delay: float) -> None:
        """paho waits min_delay before its next attempt (reconnect_delay_set resets it)."""
        self.client.reconnect_delay_set(min_delay=delay, max_delay=self.backoff.cap)  # type: ignore[arg-type]

    def _next_delay(self) -> float:
        delay = self.backoff.next()
        self._arm(delay)
        return delay

    def stats(self) -> dict[str, Any]:
        with self._lock:
            depth = len(self._pending)
        return {
            "connected": self.connected.is_set(),
            "published": self.published,
            "failed": self.dropped,
            "queue_depth": depth,
            "attempts": self.attempts,
            "broker": f"{self.host}:{self.port}",
        }

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
        self.backoff.reset()
        self._arm(self.backoff.initial)
        log.info("MQTT: connected to %s:%d", self.host, self.port)
        with self._send_lock:
            self.connected.set()
            client.publish(self.status_topic, "online", qos=1, retain=True)
            again = "reconnect" if self._ever_connected else "connect"
            self._ever_connected = True
            last = self._last_res
            if last is not None:  # the current state again, marked as such (nothing changed)
                self._send(last, again)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self.attempts += 1
        delay = self._next_delay()
        if was:
            log.warning(
                "MQTT: disconnected from %s:%d (%s); reconnecting in %.2fs",
                self.host,
                self.port,
                reason,
                delay,
            )

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.attempts += 1
        delay = self._next_delay()
        log.warning(
            "MQTT: cannot reach broker %s:%d (attempt %d); retrying in %.2fs",
            self.host,
            self.port,
            self.backoff.attempts,
            delay,
        )

    def _on_publish(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        # paho may call this holding its own locks: only our small lock is taken here,
        # and publish() is never called while holding it.
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early.add(mid)

    def __call__(self, res: Result) -> None:
        """Pipeline listener: publish on a top-class change, or when the interval elapsed."""
        with self._send_lock:
            now = time.monotonic()
            changed = res.label != self._last_label
            due = self.interval > 0 and now - self._last_t >= self.interval
            if not (changed or due):
                return
            self._last_label = res.label
            self._last_t = now
            self._last_res = res
            self._send(res, "change" if changed else "interval")

    def _send(self, res: Result, reason: str) -> None:
        import paho.mqtt.client as mqtt

        if not self.connected.is_set() and self.qos == 0:
            self.dropped += 1
            return
        payload = json.dumps({**res.to_json(), "reason": reason})
        info = self.client.publish(self.topic, payload, qos=self.qos)
        queued = info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos > 0  # sent on reconnect
        if info.rc != mqtt.MQTT_ERR_SUCCESS and not queued:
            self.dropped += 1
            return
        self.published += 1
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending.add(info.mid)

    def stop(self) -> None:
        try:
            if self.connected.is_set():
                self.client.publish(self.status_topic, "offline", qos=0, retain=True)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
