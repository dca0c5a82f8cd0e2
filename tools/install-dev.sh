#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (run as root, or with sudo).
# Debian packages: real data (Fashion-MNIST) and the real servers the tests start on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist   # full Fashion-MNIST, IDX files under /usr/share/datasets/fashion-mnist
  openssh-server          # sshd on 127.0.0.1 for bench --host and deploy tests
  openssh-client
  mosquitto               # MQTT broker for the daemon tests
  chromium                # headless browser for the live-page test
  systemd                 # systemd-analyze verify for the unit file
  qemu-user-static        # aarch64 runtime smoke test
  postgresql              # a shared Optuna study for the tune workers test
  python3-gi              # the RTSP test server runs on Debian's /usr/bin/python3 (gi bindings)
  gir1.2-gst-rtsp-server-1.0  # gst-rtsp-server: rtsp:// sources tested against a real server
  gstreamer1.0-plugins-base   # appsrc, videoconvert
  gstreamer1.0-plugins-good   # jpegenc, rtpjpegpay
  gstreamer1.0-plugins-ugly
)
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

python -m pip install -q -e ".[dev]"

# The arm64 sysroot tests/test_aarch64.py runs the device runtime in (qemu-user-static).
if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
  PYTHON=python bash tools/aarch64_sysroot.sh
fi
