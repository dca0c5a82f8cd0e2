#!/usr/bin/env bash
# Install the edgecnn camera daemon on Raspberry Pi OS (Bookworm, 64-bit recommended).
#
#   sudo ./install-rpi.sh [--deploy-user pi] [--pip-spec './edgecnn-0.1.0-py3-none-any.whl[device]'] [--no-service]
#
# edgecnn is not on PyPI: build its wheel in the checkout (python -m pip wheel --no-deps
# --no-build-isolation . -w dist) and copy it next to this script; without --pip-spec the
# newest edgecnn-*.whl here is installed with [device]. (`edgecnn deploy --install-runtime`
# pushes and installs the wheel from your computer instead, for later updates too.)
#
# What it does:
#   - apt: python3-venv, python3-picamera2 (the Pi camera stack; from apt, not pip)
#   - a system user `edgecnn` in the `video` group (camera access), no login shell
#   - a venv in /opt/edgecnn/venv (with system site-packages so picamera2 imports)
#     and the wheel with [device] into it (LiteRT, aiohttp, MQTT, Prometheus; add ,video for
#     OpenCV cameras and files, ,onnx for ONNX artifacts)
#   - /opt/edgecnn/models owned by the deploy user (group edgecnn, which the deploy user
#     joins), so `edgecnn deploy` needs no root and the service can read what it deploys
#   - /etc/edgecnn/edgecnn.toml (example config, kept if present) and the systemd unit
#   - enables the service; it starts once a model has been deployed
set -euo pipefail

ROOT=/opt/edgecnn
CONF_DIR=/etc/edgecnn
PIP_SPEC=""
DEPLOY_USER="${SUDO_USER:-pi}"
SERVICE=1

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --deploy-user) DEPLOY_USER="$2"; shift 2 ;;
    --pip-spec) PIP_SPEC="$2"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    --no-service) SERVICE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$PIP_SPEC" ]; then
  WHEEL="$(ls -1t "$(dirname "$0")"/edgecnn-*.whl 2>/dev/null | head -n 1 || true)"
  if [ -z "$WHEEL" ]; then
    echo "error: no edgecnn-*.whl next to $0 and no --pip-spec; build one: python -m pip wheel --no-deps --no-build-isolation . -w dist" >&2
    exit 2
  fi
  PIP_SPEC="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")[device]"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (sudo $0)" >&2
  exit 2
fi

echo "== packages"
apt-get update -q
apt-get install -y -q python3-venv python3-pip
# The camera stack comes from Raspberry Pi OS's apt repo; skip quietly elsewhere.
apt-get install -y -q python3-picamera2 || echo "note: python3-picamera2 not available; USB/V4L2 cameras, files and streams still work"

echo "== user edgecnn (video group)"
if ! id edgecnn >/dev/null 2>&1; then
  useradd --system --home-dir "$ROOT" --shell /usr/sbin/nologin --user-group edgecnn
fi
usermod -aG video edgecnn
getent group render >/dev/null && usermod -aG render edgecnn || true

echo "== venv in $ROOT/venv"
mkdir -p "$ROOT/models/versions"
python3 -m venv --system-site-packages "$ROOT/venv"
"$ROOT/venv/bin/pip" install --upgrade pip
"$ROOT/venv/bin/pip" install "$PIP_SPEC"
# picamera2 comes from apt and its compiled helpers (simplejpeg) are built against
# Debian's numpy; if the venv's newer numpy breaks that import, say how to fix it.
if dpkg -s python3-picamera2 >/dev/null 2>&1 && ! "$ROOT/venv/bin/python" -c "import picamera2" 2>/dev/null; then
  echo "warning: picamera2 does not import in the venv; try: $ROOT/venv/bin/pip install 'numpy<2'" >&2
fi
if id "$DEPLOY_USER" >/dev/null 2>&1; then
  # deploy gives each version to the service's group (chgrp needs the deploy user in it), and
  # `edgecnn collect` logs in as the deploy user: it reads (and with --delete removes) the
  # daemon's captures in /var/lib/edgecnn/captures, group edgecnn.
  usermod -aG edgecnn "$DEPLOY_USER"
  chown -R "$DEPLOY_USER:edgecnn" "$ROOT/models"
  chmod 0750 "$ROOT/models" "$ROOT/models/versions"
fi

echo "== config and unit"
DATA="$("$ROOT/venv/bin/python" -c 'import edgecnn.daemon, os; print(os.path.join(os.path.dirname(edgecnn.daemon.__file__), "data"))')"
mkdir -p "$CONF_DIR"
if [ ! -e "$CONF_DIR/edgecnn.toml" ]; then
  sed "s#/opt/edgecnn#$ROOT#g" "$DATA/edgecnn.toml" > "$CONF_DIR/edgecnn.toml"
fi
# Secrets (EDGECNN_TOKEN=..., EDGECNN_MQTT_PASSWORD=...) go here, readable by root only.
[ -e "$CONF_DIR/edgecnn.env" ] || install -m 0600 /dev/null "$CONF_DIR/edgecnn.env"
sed "s#/opt/edgecnn#$ROOT#g" "$DATA/edgecnn.service" > /etc/systemd/system/edgecnn.service

if [ "$SERVICE" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable edgecnn.service
  if [ -e "$ROOT/models/current/manifest.json" ]; then
    systemctl restart edgecnn.service
  else
    echo "note: no model yet; from your computer run: edgecnn deploy BUILD_DIR --host $DEPLOY_USER@$(hostname)"
  fi
fi
echo "done: edit $CONF_DIR/edgecnn.toml (source, token, MQTT), then: sudo systemctl restart edgecnn"
