"""MQTT round trip through a real mosquitto on 127.0.0.1, and a broker that is down then comes up."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from daemon_fixtures import Served, daemon_build, daemon_video, free_port, get_json

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="Debian mosquitto not installed"
)


class Broker:
    """mosquitto on a free loopback port with a temp config; stopped by its PID."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.conf = tmp / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        import socket

        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict | str]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_connect = lambda c, u, f, rc, p=None: (
            c.subscribe([(topic, 1), (f"{topic}/status", 1)]),
            self.ready.set(),
        )
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)  # SUBACK

    def _on_message(self, c, u, msg) -> None:
        text = msg.payload.decode()
        try:
            self.messages.append((msg.topic, json.loads(text)))
        except json.JSONDecodeError:
            self.messages.append((msg.topic, text))

    def predictions(self) -> list[dict]:
        return [m for t, m in self.messages if isinstance(m, dict)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def model_and_video(tmp_path_factory):
    return daemon_build(tmp_path_factory), daemon_video(tmp_path_factory)[0]


def test_mqtt_round_trip(model_and_video, tmp_path):
    build, video = model_and_video
    broker = Broker(tmp_path).start()
    try:
        sub = Subscriber(broker.port, "cam/1/pred")
        with Served("--model", str(build), "--source", str(video), "--loop",
                    "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--mqtt-topic", "cam/1/pred") as s:  # fmt: skip
            s.wait_for(lambda: len(sub.predictions()) >= 10, what="10 MQTT messages")
            msgs = sub.predictions()
        sub.close()
        assert ("cam/1/pred/status", "online") in sub.messages
        for m in msgs:
            assert (
                m["model"]["name"] == "cnn_small"
                and len(m["top_k"]) == 5
                and m["reason"] == "change"
            )
        # Published on a change of top class only: consecutive messages differ.
        assert all(a["label"] != b["label"] for a, b in zip(msgs, msgs[1:], strict=False))
    finally:
        broker.stop()


def test_broker_down_keeps_classifying_then_connects(model_and_video, tmp_path):
    build, video = model_and_video
    port = free_port()
    with Served("--model", str(build), "--source", str(video), "--loop", "--mqtt-host", "127.0.0.1",
                "--mqtt-port", str(port), "--mqtt-interval", "0.2") as s:  # fmt: skip
        # No broker: classification goes on, and the daemon logs its connection attempts.
        first = s.wait_for(
            lambda: (
                get_json(s.url("/healthz"))[1]["inferences"] > 20 and get_json(s.url("/healthz"))[1]
            ),
            what="inferences",
        )
        # Health tells the truth: degraded, with the reason; the process itself is alive.
        assert first["status"] == "degraded" and "mqtt_disconnected" in first["reasons"], first
        assert get_json(s.url("/livez"))[0] == 200
        s.wait_for(lambda: "cannot reach broker" in s.output(), what="a logged MQTT attempt")
        broker = Broker(tmp_path, port=port).start()
        try:
            sub = Subscriber(port, "edgecnn/predictions")
            # paho's backoff retries reach the broker that came up later.
            s.wait_for(
                lambda: len(sub.predictions()) >= 3,
                timeout=40,
                what="messages after the broker came up",
            )
            assert "MQTT: connected" in s.output()
            code, h = get_json(s.url("/healthz"))
            assert code == 200 and h["status"] == "ok", h
            sub.close()
        finally:
            broker.stop()
        took = s.stop()
    assert took < 2.0, took
