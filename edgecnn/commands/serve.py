"""`edgecnn serve`: the camera classifier daemon (device side: never imports TensorFlow)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from edgecnn.commands.common import handle_errors
from edgecnn.manifest import RESIZE_MODES


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager --config: its values become defaults, so options given on the command line win."""
    if value:
        from edgecnn.daemon.config import load_config

        try:
            ctx.default_map = {**(ctx.default_map or {}), **load_config(value)}
        except Exception as e:  # BadInput -> a usage error with one line
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


@click.command(
    "serve",
    epilog="""\b
Examples:
  edgecnn serve --model build/digits --source video.mp4 --loop
  edgecnn serve --model build/digits --source 0 --resize crop --no-overlay
  edgecnn serve --model /opt/edgecnn/models/current --source picamera2 \\
      --host 0.0.0.0 --token-file /etc/edgecnn/token --mqtt-host localhost
  edgecnn serve --config /etc/edgecnn/edgecnn.toml --port 9000
  edgecnn serve --model build/digits --source 0 --capture-dir /var/lib/edgecnn/captures \\
      --capture-below 0.6 --capture-every 100 --capture-rate 0.5

\b
Endpoints: GET / (live page), /stream.mjpg, /api/predictions, /api/captures, /healthz
(ok or degraded, with reasons), /livez, /readyz, /metrics; POST /api/predict
(image bytes as the body). SIGHUP or a change to the model files reloads the
model; SIGTERM/SIGINT stop. A video file that cannot be decoded exits 2;
cameras and network streams are retried.""",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with these options (command line overrides it).",
)
@click.option(
    "--model", "model", required=True, help="Build directory, manifest.json or artifact file."
)
@click.option(
    "--source",
    required=True,
    help="picamera2[:N], camera index, /dev/videoN, video file, image folder, or rtsp://, http:// URL.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; non-loopback needs --token or --insecure.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="HTTP port (0: any free port).",
)
@click.option(
    "--token",
    envvar="EDGECNN_TOKEN",
    default=None,
    help="Bearer token for every route but /healthz (env EDGECNN_TOKEN).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read the token from this file.",
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind without a token.")
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "litert", "tflite_runtime", "edgetpu", "onnxruntime"]),
)
@click.option(
    "--artifact",
    default=None,
    help="Which artifact of the build (file name, precision, format:precision).",
)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help="Interpreter threads.")
@click.option(
    "--resize",
    type=click.Choice(RESIZE_MODES),
    default=None,
    help="How frames are fitted to the model: stretch, crop (centre) or letterbox "
    "(default: the mode the model was trained with, from its manifest).",
)
@click.option(
    "--overlay/--no-overlay",
    default=True,
    show_default=True,
    help="Burn the top-k panel into the /stream.mjpg frames.",
)
@click.option("--top-k", "top_k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--threshold",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Top-1 score below this reports no label.",
)
@click.option(
    "--smooth",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Average scores over the last N frames.",
)
@click.option("--loop/--no-loop", default=False, help="Loop a video file or image folder.")
@click.option(
    "--pace/--no-pace",
    default=True,
    show_default=True,
    help="Play files at their frame rate (--no-pace: as fast as possible).",
)
@click.option(
    "--sync",
    is_flag=True,
    help="Files: wait for inference on every frame (no drops; for evaluation).",
)
@click.option(
    "--folder-fps",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.01, 1000),
    help="Frame rate of an image-folder source.",
)
@click.option(
    "--max-upload",
    default=5_000_000,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest POST /api/predict body, bytes.",
)
@click.option(
    "--max-pixels",
    default=16_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Largest upload in decoded pixels (checked from the header).",
)
@click.option(
    "--decode-workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Uploads decoded at once.",
)
@click.option(
    "--upload-slots",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Uploads in flight; more get 503.",
)
@click.option(
    "--max-connections",
    default=128,
    show_default=True,
    type=click.IntRange(4, 65535),
    help="Open HTTP connections (the oldest idle one is closed to make room).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds for a whole request head; also the keep-alive idle limit.",
)
@click.option(
    "--body-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.5, 3600),
    help="Seconds for an upload body.",
)
@click.option(
    "--keepalive-requests",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Requests per keep-alive connection.",
)
@click.option(
    "--stream-write-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.5, 600),
    help="Drop a /stream.mjpg client that takes no frame for this long.",
)
@click.option(
    "--stream-fps",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0.1, 120),
    help="Frame-rate cap of /stream.mjpg.",
)
@click.option(
    "--stream-clients",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Concurrent /stream.mjpg clients.",
)
@click.option(
    "--watch",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between model-file change checks (0: off).",
)
@click.option(
    "--source-backoff-max",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="Longest wait between source reconnect attempts, seconds.",
)
@click.option(
    "--backoff-jitter",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Reconnect waits are scaled by a random factor in [1 - jitter, 1].",
)
@click.option("--exit-on-end", is_flag=True, help="Stop when a (non-looping) file source ends.")
@click.option("--mqtt-host", default=None, help="Publish predictions to this MQTT broker.")
@click.option("--mqtt-port", default=1883, show_default=True, type=click.IntRange(1, 65535))
@click.option("--mqtt-topic", default="edgecnn/predictions", show_default=True)
@click.option(
    "--mqtt-interval",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Also publish every N seconds (0: only on a top-class change).",
)
@click.option("--mqtt-qos", default=0, show_default=True, type=click.IntRange(0, 2))
@click.option(
    "--mqtt-backoff-max",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="Longest wait between broker reconnect attempts, seconds.",
)
@click.option(
    "--mqtt-queue",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="QoS 1/2 messages kept while the broker is away.",
)
@click.option("--mqtt-username", default=None)
@click.option(
    "--mqtt-password-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="(or env EDGECNN_MQTT_PASSWORD)",
)
@click.option(
    "--log-file", type=click.Path(dir_okay=False), default=None, help="JSON-lines prediction log."
)
@click.option("--log-max-bytes", default=10_000_000, show_default=True, type=click.IntRange(1024))
@click.option("--log-backups", default=3, show_default=True, type=click.IntRange(0, 100))
@click.option(
    "--capture-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Save frames worth a person's look here (JPEG + JSON), for `edgecnn collect`.",
)
@click.option(
    "--capture-below",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Capture when the top-1 score is under this.",
)
@click.option(
    "--capture-margin",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Capture when top-1 minus top-2 is under this.",
)
@click.option(
    "--capture-every",
    type=click.IntRange(1),
    default=None,
    help="Also capture a random 1-in-N sample of all frames.",
)
@click.option(
    "--capture-max-mb",
    default=500.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Disk budget; oldest captures go first.",
)
@click.option(
    "--capture-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Captures per second at most.",
)
@click.option(
    "--capture-model-size", is_flag=True, help="Also save each capture at the model's input size."
)
@click.option("--capture-seed", type=int, default=None, hidden=True)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (each HTTP request).")
@handle_errors
def command(**kwargs: Any) -> None:
    """Classify a camera or video stream and serve the results over HTTP (and MQTT).

    Binds 127.0.0.1 unless told otherwise; the process runs until SIGTERM or
    SIGINT, and exits 2 with a one-line error on bad input (a missing
    manifest, a port in use, a source that can never open).
    """
    from edgecnn.daemon.config import ServeOptions
    from edgecnn.daemon.nativelog import route_native_stderr
    from edgecnn.daemon.redact import install_log_redaction
    from edgecnn.daemon.service import Daemon

    route_native_stderr()  # FFmpeg/GStreamer lines become formatted, redacted log records
    logging.basicConfig(
        level=logging.DEBUG if kwargs.get("verbose") else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()
    for noisy in ("PIL", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    opts = ServeOptions(**kwargs)
    daemon = Daemon(opts)
    daemon.install_signals()
    daemon.start()
    click.echo(f"serving on http://{opts.host}:{daemon.port}/", err=True)
    code = daemon.run_forever()
    sys.exit(code)
