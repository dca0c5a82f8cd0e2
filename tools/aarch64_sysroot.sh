#!/usr/bin/env bash
# Make the aarch64 sysroot that tools/aarch64_smoke.sh runs the device runtime in (needs root:
# apt-get). Called by tools/install-dev.sh, so tests never install anything themselves.
# An arm64 CPython from Debian's arm64 packages (apt-get download + dpkg-deb -x), the
# manylinux aarch64 wheels of ai-edge-litert and numpy (pip --target --platform), and a
# proc/cpuinfo + sys/devices/system/cpu describing a 4-core Cortex-A72 (as on a Pi 4):
# LiteRT 2.3 crashes under emulation without it (qemu resolves absolute paths inside
# QEMU_LD_PREFIX first). Work dir: $EDGECNN_AARCH64_WORK (default /tmp/edgecnn-aarch64).
set -euo pipefail

# shellcheck source=tools/aarch64_env.sh
source "$(dirname "$0")/aarch64_env.sh"

# 1. qemu-user-static
if ! command -v qemu-aarch64-static >/dev/null; then
  say "installing qemu-user-static"
  apt-get install -y -q qemu-user-static >/dev/null
fi

# 2. arm64 CPython unpacked into a sysroot
if [ ! -x "$SYSROOT/usr/bin/python$PYVER" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    say "adding the arm64 architecture to apt"
    dpkg --add-architecture arm64
  fi
  if ! apt-cache show "python$PYVER-minimal:arm64" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
  fi
  mkdir -p "$WORK/debs" "$SYSROOT"
  say "downloading arm64 python$PYVER and its libraries"
  chmod 777 "$WORK/debs"  # apt's _apt user writes the downloads
  (cd "$WORK/debs" && apt-get download -q \
    "python$PYVER-minimal:arm64" "libpython$PYVER-minimal:arm64" "libpython$PYVER-stdlib:arm64" \
    libc6:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libssl3:arm64 libbz2-1.0:arm64 \
    liblzma5:arm64 libstdc++6:arm64 libgcc-s1:arm64 libcrypt1:arm64 libuuid1:arm64 \
    libsqlite3-0:arm64 >/dev/null)
  for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$SYSROOT"; done
fi

# 3. aarch64 wheels: LiteRT and numpy (nothing else is needed by predict_batch)
if [ ! -d "$SITE/ai_edge_litert" ]; then
  say "installing aarch64 wheels of ai-edge-litert and numpy"
  "$HOST_PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$SITE" \
    --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --only-binary=:all: \
    ai-edge-litert numpy 2>&1 | grep -v "is ignored: it is neither" >&2 || true
fi

# 4. An Arm CPU description for LiteRT's cpuinfo probe (a Raspberry Pi 4)
mkdir -p "$SYSROOT/proc" "$SYSROOT/sys/devices/system/cpu"
: > "$SYSROOT/proc/cpuinfo"
for i in 0 1 2 3; do
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i" >> "$SYSROOT/proc/cpuinfo"
done
printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n' >> "$SYSROOT/proc/cpuinfo"
echo "0-3" > "$SYSROOT/sys/devices/system/cpu/possible"
echo "0-3" > "$SYSROOT/sys/devices/system/cpu/present"

say "sysroot ready: $SYSROOT"
