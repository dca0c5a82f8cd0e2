"""The daemon's options, from a TOML file and the command line (the command line wins).

A config file uses the long option names with underscores; a table prefixes
its keys, so `[mqtt] host = "broker"` is `--mqtt-host broker` (but `[http]`
keys are the plain names: `[http] port = 80` is `--port 80`):

    model = "/opt/edgecnn/models/current"
    source = "picamera2"
    [http]
    host = "0.0.0.0"
    token_file = "/etc/edgecnn/token"
    [mqtt]
    host = "localhost"
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Tables whose keys are the plain option names ([http] port = 8080 is --port).
PLAIN_TABLES = {"http"}


@dataclass
class ServeOptions:
    model: str = ""
    source: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    token_file: str | None = None
    insecure: bool = False
    backend: str = "auto"
    artifact: str | None = None
    threads: int | None = None
    resize: str | None = None  # override the manifest's resize mode (stretch, crop, letterbox)
    overlay: bool = True  # burn the top-k panel into /stream.mjpg frames
    top_k: int = 5
    threshold: float = 0.0
    smooth: int = 1
    loop: bool = False
    pace: bool = True
    sync: bool = False
    folder_fps: float = 10.0
    max_upload: int = 5_000_000
    max_pixels: int = 16_000_000  # decoded pixels an upload may have (header checked first)
    decode_workers: int = 1  # uploads decoded at once (each may take ~4 bytes per pixel)
    upload_slots: int = 8  # uploads in flight (reading, waiting, decoding); more get 503
    max_connections: int = 128  # open HTTP connections (the oldest idle one makes room)
    header_timeout: float = 10.0  # a request head must arrive within this (also keep-alive idle)
    body_timeout: float = 30.0  # an upload body must arrive within this
    keepalive_requests: int = 1000  # requests per keep-alive connection
    stream_fps: float = 15.0
    stream_clients: int = 8
    stream_write_timeout: float = (
        5.0  # a stream client that takes no frame for this long is dropped
    )
    watch: float = 1.0  # seconds between model-file checks; 0 disables
    source_backoff_max: float = 2.0  # cap of the source reconnect backoff, seconds
    backoff_jitter: float = 0.5  # each delay is scaled by a random factor in [1 - jitter, 1]
    exit_on_end: bool = False
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_topic: str = "edgecnn/predictions"
    mqtt_interval: float = 0.0
    mqtt_qos: int = 0
    mqtt_username: str | None = None
    mqtt_password_file: str | None = None
    mqtt_backoff_max: float = 2.0  # cap of the broker reconnect backoff, seconds
    mqtt_queue: int = 1000  # QoS 1/2 messages kept while the broker is away
    log_file: str | None = None
    log_max_bytes: int = 10_000_000
    log_backups: int = 3
    capture_dir: str | None = None  # edgecnn.daemon.capture: frames worth a person's look
    capture_below: float | None = None
    capture_margin: float | None = None
    capture_every: int | None = None
    capture_max_mb: float = 500.0
    capture_rate: float = 1.0
    capture_model_size: bool = False
    capture_seed: int | None = None
    verbose: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_token(self) -> str | None:
        """--token, else the first line of --token-file (keeps it out of `ps` and unit files)."""
        if self.token:
            return self.token
        if self.token_file:
            try:
                tok = Path(self.token_file).read_text("utf-8").strip()
            except OSError as e:
                raise BadInput(
                    f"cannot read token file {self.token_file}: {e.strerror or e}"
                ) from None
            if not tok:
                raise BadInput(f"token file {self.token_file} is empty")
            return tok
        return None

    def mqtt_password(self) -> str | None:
        if not self.mqtt_password_file:
            return os.environ.get("EDGECNN_MQTT_PASSWORD")
        try:
            return Path(self.mqtt_password_file).read_text("utf-8").strip()
        except OSError as e:
            raise BadInput(f"cannot read MQTT password file: {e.strerror or e}") from None


OPTION_NAMES = {f.name for f in fields(ServeOptions)} - {"extra"}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Flatten a TOML config file into option names; unknown keys are bad input."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except OSError as e:
        raise BadInput(f"cannot read config {p}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"config {p} is not valid TOML: {e}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                name = sub if key in PLAIN_TABLES else f"{key}_{sub}"
                flat[name.replace("-", "_")] = v
        else:
            flat[key.replace("-", "_")] = value
    unknown = sorted(set(flat) - OPTION_NAMES)
    if unknown:
        raise BadInput(f"config {p}: unknown option(s) {', '.join(unknown)}")
    return flat
