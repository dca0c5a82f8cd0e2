"""MQTT round trip through a real mosquitto on 127.0.0.1, and a broker that is down then comes up."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from daemon_fixtures import (
    MOSQUITTO,
    Broker,
    Served,
    Subscriber,
    TcpProxy,
    daemon_build,
    daemon_video,
    free_port,
    get_json,
    http,
)

pytestmark = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="Debian mosquitto not installed"
)


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
        # A frame classified before the broker accepted the daemon comes first, as "connect".
        reasons = [m["reason"] for m in msgs]
        assert reasons[1:] == ["change"] * (len(msgs) - 1), reasons
        assert reasons[0] in ("change", "connect"), reasons
        assert all(m["model"]["name"] == "cnn_small" and len(m["top_k"]) == 5 for m in msgs)
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


def mqtt_metrics(s: Served) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = http("GET", s.url("/metrics"))[2].decode()
    return {
        x.name: x.value
        for f in text_string_to_metric_families(body)
        for x in f.samples
        if x.name.startswith("edgecnn_mqtt")
    }


def change_decisions(log: Path) -> dict[int, str]:
    """{seq: label} of every result that changed the top label, from the prediction log:
    exactly what the publisher must send with --mqtt-interval 0 (its first result too)."""
    out: dict[int, str] = {}
    last: object = object()
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if "event" in r:
            continue
        if r["label"] != last:
            out[r["seq"]] = r["label"]
        last = r["label"]
    return out


@pytest.mark.parametrize("qos", [0, 1])
def test_broker_outage_health_metrics_and_no_false_change(model_and_video, tmp_path, qos):
    """Issue 12.9/12.10: a 3 s broker outage (the link cut by a relay, the broker up).

    During it /healthz is degraded with mqtt_disconnected and /metrics shows the link
    down; the daemon is back within its backoff cap (1 s here) after the link returns.
    At QoS 1 no change is lost; at QoS 0 the failures are counted. After the reconnect
    the current result is sent again as "reconnect", and every "change" is a real one.
    """
    build, video = model_and_video
    broker = Broker(tmp_path).start()
    proxy = TcpProxy(broker.port).up()
    sub = Subscriber(broker.port, "edgecnn/predictions")
    log = tmp_path / "pred.jsonl"
    try:
        with Served("--model", str(build), "--source", str(video), "--loop", "--log-file", str(log),
                    "--mqtt-host", "127.0.0.1", "--mqtt-port", str(proxy.port),
                    "--mqtt-qos", str(qos), "--mqtt-backoff-max", "1") as s:  # fmt: skip
            s.wait_for(lambda: len(sub.predictions()) >= 10, what="messages before the outage")
            proxy.down()
            h = s.wait_for(
                lambda: (lambda r: r[1] if r[0] == 503 else None)(get_json(s.url("/healthz"))),
                what="degraded health",
            )
            assert "mqtt_disconnected" in h["reasons"] and h["mqtt"]["connected"] is False
            assert get_json(s.url("/livez"))[0] == 200
            assert mqtt_metrics(s)["edgecnn_mqtt_connected"] == 0
            time.sleep(3)
            proxy.up()
            s.wait_for(
                lambda: get_json(s.url("/healthz"))[0] == 200, timeout=10, what="reconnected"
            )
            n = len(sub.predictions())
            s.wait_for(lambda: len(sub.predictions()) > n + 10, what="messages after")
            s.wait_for(
                lambda: mqtt_metrics(s)["edgecnn_mqtt_queue_depth"] == 0, what="queue drained"
            )
            m = mqtt_metrics(s)
            msgs = sub.predictions()
    finally:
        sub.close()
        proxy.down()
        broker.stop()
    assert m["edgecnn_mqtt_reconnects_total"] >= 1
    decided = change_decisions(log)
    last_seen = max(x["seq"] for x in msgs)
    changes = {x["seq"]: x["label"] for x in msgs if x["reason"] == "change"}
    lost = [q for q in decided if q <= last_seen and q not in changes]
    assert set(changes) <= set(decided), "a 'change' that was not one"
    assert all(changes[q] == decided[q] for q in changes)
    assert any(x["reason"] == "reconnect" for x in msgs)
    if qos == 1:
        assert m["edgecnn_mqtt_publish_failures_total"] == 0
        assert lost == [], f"{len(lost)} of {len(decided)} changes lost at QoS 1"
    else:
        assert m["edgecnn_mqtt_publish_failures_total"] > 0 and lost
