"""Every HTTP endpoint of `edgecnn serve`, the token rules, and bad input answered cleanly."""

from __future__ import annotations

import io
import json
import socket
import uuid

import numpy as np
import pytest
from daemon_fixtures import (
    Served,
    daemon_build,
    daemon_video,
    digits_test,
    free_port,
    get_json,
    http,
)
from PIL import Image

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return daemon_video(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def served(build, video):
    with Served(
        "--model", str(build), "--source", str(video), "--loop", "--max-upload", "200000"
    ) as s:
        s.wait_for(
            lambda: get_json(s.url("/api/predictions"))[1]["prediction"], what="a first prediction"
        )
        yield s


def png_bytes(img: np.ndarray, size: int = 64) -> bytes:
    im = Image.fromarray(img[..., 0]).resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_live_page(served):
    code, headers, body = http("GET", served.url("/"))
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "stream.mjpg" in page and "api/predictions" in page


def test_mjpeg_stream_sends_annotated_jpegs(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"\xff\xd9") < 2 and len(data) < 2_000_000:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0]
    assert b"multipart/x-mixed-replace" in head
    start = rest.index(b"\xff\xd8")
    jpeg = rest[start : rest.index(b"\xff\xd9", start) + 2]
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG" and im.width >= 320  # 96 px frames upscaled for the overlay


def test_predictions_json(served):
    code, data = get_json(served.url("/api/predictions"))
    assert code == 200
    assert data["model"]["name"] == "cnn_small" and data["model"]["version"]
    p = data["prediction"]
    assert len(p["top_k"]) == 5 and p["top_k"][0]["score"] >= p["top_k"][-1]["score"]
    assert p["label"] == p["top_k"][0]["label"]
    assert data["source"]["state"] == "streaming"


def test_predict_upload_matches_the_runtime(served, build):
    """An upload is decoded straight to the model's size: a 64x64 nearest-upscale of an 8x8
    test digit comes back as exactly that digit, so the answer is the runtime's on the original."""
    from edgecnn.runtime import Runner

    runner = Runner(build)
    x, y = digits_test()
    for i in range(5):
        body = png_bytes(x[i])
        code, _, out = http(
            "POST", served.url("/api/predict?top_k=3"), body, {"Content-Type": "image/png"}
        )
        assert code == 200, out
        res = json.loads(out)
        want = runner.classify(x[i], top_k=3)
        assert [t["index"] for t in res["top_k"]] == [p.index for p in want]
        assert res["top_k"][0]["score"] == pytest.approx(want[0].score, abs=1e-4)


def test_predict_multipart_form(served):
    x, _ = digits_test()
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes(x[0])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    code, _, out = http(
        "POST",
        served.url("/api/predict"),
        body,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert code == 200, out
    assert len(json.loads(out)["top_k"]) == 5


def test_predict_bad_uploads(served):
    code, _, out = http(
        "POST",
        served.url("/api/predict"),
        b"this is not an image at all",
        {"Content-Type": "image/png"},
    )
    assert code == 400 and "not a readable image" in json.loads(out)["error"]
    code, _, out = http("POST", served.url("/api/predict"), b"", {"Content-Type": "image/png"})
    assert code == 400
    big = b"\x89PNG" + b"\0" * 300_000
    code, _, out = http("POST", served.url("/api/predict"), big)
    assert code == 413 and "limit" in json.loads(out)["error"]
    # No Content-Length (raw socket): refused before reading anything.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert b" 411 " in sock.recv(4096).split(b"\r\n")[0]
    # A decompression bomb: small file, huge pixel count.
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, format="PNG")
    code, _, out = http("POST", served.url("/api/predict"), buf.getvalue())
    assert code == 413 and "pixels" in json.loads(out)["error"]
    # The daemon is still serving after all that.
    assert http("GET", served.url("/healthz"))[0] == 200


def test_healthz_and_metrics(served):
    from prometheus_client.parser import text_string_to_metric_families

    code, h = get_json(served.url("/healthz"))
    assert code == 200 and h["status"] == "ok" and h["frames"] > 0
    code, headers, body = http("GET", served.url("/metrics"))
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "edgecnn_frames",
        "edgecnn_inferences",
        "edgecnn_dropped_frames",
        "edgecnn_errors",
        "edgecnn_fps",
        "edgecnn_inference_latency_seconds",
        "edgecnn_model_info",
        "edgecnn_http_requests",
    ):
        assert name in fams, name
    assert fams["edgecnn_frames"].samples[0].value > 0
    assert fams["edgecnn_fps"].samples[0].value > 0
    count = [
        s for s in fams["edgecnn_inference_latency_seconds"].samples if s.name.endswith("_count")
    ]
    assert count[0].value > 0
    # the frame-to-answer path by stage, one histogram per stage, one sample per frame
    stage_counts = {s.labels["stage"]: s.value for s in fams["edgecnn_frame_stage_seconds"].samples
                    if s.name.endswith("_count")}  # fmt: skip
    assert set(stage_counts) == {"preprocess", "inference", "postprocess", "frame_age"}
    assert min(stage_counts.values()) > 0
    assert max(stage_counts.values()) - min(stage_counts.values()) <= 1  # a frame mid-update


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/../manifest.json",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/stream.mjpg/../../etc/passwd",
        "//etc/passwd",
    ],
)
def test_no_route_reads_files(served, path):
    code, _, body = http("GET", served.base + path)
    assert code == 404 and b"root:" not in body


def test_token_rules(build, video):
    with Served("--model", str(build), "--source", str(video), "--loop", "--token", TOKEN) as s:
        for path in ("/", "/api/predictions", "/metrics", "/stream.mjpg"):
            code, headers, _ = http("GET", s.url(path))
            assert code == 401 and "Bearer" in headers.get("WWW-Authenticate", ""), path
        assert (
            http("GET", s.url("/api/predictions"), headers={"Authorization": "Bearer wrong"})[0]
            == 401
        )
        assert http("POST", s.url("/api/predict"), b"x" * 10)[0] == 401
        assert (
            http("GET", s.url("/api/predictions"), headers={"Authorization": f"Bearer {TOKEN}"})[0]
            == 200
        )
        assert http("GET", s.url(f"/api/predictions?token={TOKEN}"))[0] == 200
        assert http("GET", s.url(f"/?token={TOKEN}"))[0] == 200
        assert http("GET", s.url("/healthz"))[0] in (200, 503)  # health needs no token


def test_non_loopback_needs_token_or_insecure(build, video, tmp_path):
    s = Served("--model", str(build), "--source", str(video), "--host", "0.0.0.0", wait=False)
    assert s.proc.wait(30) == 2
    out = s.output().strip().splitlines()
    assert out[-1].startswith("error: binding 0.0.0.0 exposes") and "Traceback" not in s.output()
    tok = tmp_path / "token"
    tok.write_text(TOKEN + "\n")
    with Served(
        "--model", str(build), "--source", str(video), "--host", "0.0.0.0", "--token-file", str(tok)
    ) as s:
        assert http("GET", s.url("/api/predictions"))[0] == 401
        assert (
            http("GET", s.url("/api/predictions"), headers={"Authorization": f"Bearer {TOKEN}"})[0]
            == 200
        )
    with Served(
        "--model", str(build), "--source", str(video), "--host", "0.0.0.0", "--insecure"
    ) as s:
        assert http("GET", s.url("/api/predictions"))[0] == 200


def run_fails(*args: str) -> str:
    s = Served(*args, wait=False)
    assert s.proc.wait(30) == 2, s.output()
    text = s.output()
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


def test_bad_inputs_give_one_line_errors(build, video, tmp_path):
    empty = tmp_path / "nomanifest"
    empty.mkdir()
    (empty / "model.tflite").write_bytes(b"x")
    assert "no manifest.json" in run_fails("--model", str(empty), "--source", str(video))
    assert "is not a camera index" in run_fails(
        "--model", str(build), "--source", str(tmp_path / "missing.mp4")
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = run_fails("--model", str(build), "--source", str(video), "--port", str(port))
    assert line == f"error: port {port} on 127.0.0.1 is already in use"


def test_unopenable_source_keeps_serving_uploads(build):
    """A camera that is not there: the daemon retries it, reports degraded health, still answers /api/predict."""
    with Served("--model", str(build), "--source", "/dev/video97") as s:
        code, h = s.wait_for(
            lambda: (lambda r: r if r[1]["source"]["reconnects"] >= 2 else None)(
                get_json(s.url("/healthz"))
            ),
            what="reconnect attempts",
        )
        assert code == 503 and h["status"] == "degraded"
        assert "cannot open" in h["source"]["message"]
        x, _ = digits_test()
        assert http("POST", s.url("/api/predict"), png_bytes(x[0]))[0] == 200
        assert "retrying in" in s.output()


def test_config_file_and_cli_override(build, video, tmp_path):
    port = free_port()
    cfg = tmp_path / "edgecnn.toml"
    cfg.write_text(
        f'model = "{build}"\nsource = "{video}"\nloop = true\ntop_k = 2\n\n[http]\nport = {port}\n'
    )
    with Served(f"--config={cfg}", "--top-k", "4", port=port) as s:
        p = s.wait_for(
            lambda: get_json(s.url("/api/predictions"))[1]["prediction"], what="prediction"
        )
        assert len(p["top_k"]) == 4  # the command line wins over the file
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "x"\nsauce = "y"\n')
    s = Served(f"--config={bad}", wait=False)
    assert s.proc.wait(30) == 2 and "unknown option(s) sauce" in s.output()


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_unreadable_video_file_exits_2_at_once(video, tmp_path, build, kind):
    """Issue 13.2: a corrupt video is bad input: one-line error, exit 2, no retry loop.

    Before: it was retried with a growing backoff and `moov atom not found` spam, forever.
    """
    bad = tmp_path / "bad.mp4"
    data = video.read_bytes()
    bad.write_bytes(bytes(range(256)) * 64 if kind == "garbage" else data[: len(data) // 3])
    s = Served("--model", str(build), "--source", str(bad), "--exit-on-end", wait=False)
    assert s.proc.wait(30) == 2, s.output()
    out = s.output()
    lines = out.strip().splitlines()
    assert lines[-1] == f"error: {bad} is not a readable video (it cannot be decoded)", out
    assert "Traceback" not in out and "retrying" not in out and len(lines) <= 3, out


def test_credentials_in_a_camera_url_are_never_shown(build, tmp_path):
    """Issue 12.7: the user-info of the source URL is redacted in health, API, metrics, logs."""
    port = free_port()  # nothing listens: the source keeps reconnecting, with messages
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/live"
    log = tmp_path / "pred.jsonl"
    with Served("--model", str(build), "--source", url, "-v", "--log-file", str(log)) as s:
        s.wait_for(
            lambda: get_json(s.url("/healthz"))[1]["source"]["reconnects"] >= 2,
            what="reconnect attempts",
        )
        shown = [http("GET", s.url(p))[2].decode() for p in ("/healthz", "/api/predictions")]
        shown.append(http("GET", s.url("/metrics"))[2].decode())
        h = json.loads(shown[0])
    everything = "\n".join([*shown, s.output(), log.read_text()])
    assert "hunter2" not in everything and "admin:" not in everything
    assert h["source"]["name"] == f"url:rtsp://***@127.0.0.1:{port}/live"
    assert h["problems"] and all("***@" in p or "rtsp" not in p for p in h["problems"])


def test_token_is_kept_out_of_logs_and_the_page_gets_a_cookie(build, video):
    """Issue 12.8: -v logs requests with `token=***`; the page's first load sets an HttpOnly
    session cookie that authorizes the page's later requests without ?token=."""
    with Served("--model", str(build), "--source", str(video), "--loop", "-v",
                "--token", TOKEN) as s:  # fmt: skip
        code, headers, _ = http("GET", s.url(f"/?token={TOKEN}"))
        assert code == 200
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        session = cookie.split(";", 1)[0]
        assert http("GET", s.url("/api/predictions"), headers={"Cookie": session})[0] == 200
        assert (
            http("GET", s.url("/metrics"), headers={"Cookie": "edgecnn_session=forged"})[0] == 401
        )
        assert http("GET", s.url(f"/api/predictions?token={TOKEN}"))[0] == 200
        s.wait_for(lambda: "token=***" in s.output(), what="the redacted access log line")
    assert TOKEN not in s.output()
