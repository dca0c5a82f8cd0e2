#!/usr/bin/env bash
# Run the edgecnn device runtime on aarch64 under qemu-user-static and check that its
# top-1 predictions match the x86 result on the same real images.
#
#   tools/aarch64_smoke.sh [BUILD_DIR]
#
# Without BUILD_DIR a small CNN is trained on scikit-learn digits and converted (needs
# the host's TensorFlow). The arm64 side has no TensorFlow: an arm64 CPython from
# Debian's arm64 packages (apt-get download + dpkg-deb -x into a sysroot), and the
# manylinux aarch64 wheels of ai-edge-litert and numpy (pip --target --platform).
# LiteRT 2.3 crashes under emulation unless the sysroot describes an Arm CPU, so
# the sysroot holds its own proc/cpuinfo and sys/devices/system/cpu/{possible,present}
# (a 4-core Cortex-A72, as on a Pi 4); qemu resolves absolute paths inside
# QEMU_LD_PREFIX first. The emulated CPU is pinned to a Cortex-A72 too (QEMU_CPU):
# with qemu 7.2's default "max" CPU (i8mm, SVE...) LiteRT's int8 kernels return wrong
# scores under emulation (7.5% accuracy on digits; float32 unaffected), while
# cortex-a72, cortex-a76 and neoverse-n1 all give the x86 result exactly.
#
# Needs root for apt (qemu-user-static, dpkg --add-architecture arm64) the first time.
# Work dir: $EDGECNN_AARCH64_WORK (default /tmp/edgecnn-aarch64); reused between runs.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${EDGECNN_AARCH64_WORK:-/tmp/edgecnn-aarch64}
HOST_PY=${PYTHON:-python3}
SYSROOT=$WORK/sysroot
SITE=$SYSROOT/opt/edgecnn-site
N_IMAGES=${N_IMAGES:-200}
PYVER=3.11
mkdir -p "$WORK"

say() { echo "[aarch64] $*" >&2; }

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

# 5. A model and real test images
BUILD=${1:-}
if [ -z "$BUILD" ]; then
  BUILD=$WORK/build
  if [ ! -f "$BUILD/manifest.json" ]; then
    say "training and converting a small digits CNN (host, TensorFlow)"
    (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=3 "$HOST_PY" -c "
import sys; sys.path.insert(0, 'tests')
from pathlib import Path
from runtime_fixtures import make_build
make_build(Path('$BUILD.tmp'), 'digits', 'cnn_small', epochs=5)
" >/dev/null 2>&1) && rm -rf "$BUILD" && mv "$BUILD.tmp" "$BUILD"
  fi
fi
(cd "$REPO" && "$HOST_PY" -c "
import numpy as np
from edgecnn.data import adapt_images, load_dataset
from edgecnn.manifest import load_manifest
ds = load_dataset('digits', seed=0)
shape = load_manifest('$BUILD')['model']['input']['shape']
np.save('$WORK/x.npy', adapt_images(ds.x_test[:$N_IMAGES], shape))
np.save('$WORK/y.npy', ds.y_test[:$N_IMAGES])
")

PROBE='
import json, platform, sys, time
import numpy as np
from edgecnn.runtime import Runner
t = time.perf_counter()
r = Runner(sys.argv[1], threads=1)
x = np.load(sys.argv[2])
probs = r.predict_batch(x)
out = {"machine": platform.machine(), "backend": r.backend_name, "artifact": r.artifact["path"],
       "top1": probs.argmax(1).tolist(), "heavy": [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")],
       "seconds": time.perf_counter() - t}
print(json.dumps(out))
'

say "x86-64 run"
X86=$(cd "$WORK" && PYTHONPATH="$REPO" "$HOST_PY" -c "$PROBE" "$BUILD" "$WORK/x.npy" 2>/dev/null | tail -1)
say "aarch64 run under qemu-aarch64-static"
ARM=$(cd "$WORK" && QEMU_CPU=${QEMU_CPU:-cortex-a72} QEMU_LD_PREFIX="$SYSROOT" PYTHONPATH="$SITE:$REPO" PYTHONNOUSERSITE=1 PYTHONHOME="$SYSROOT/usr" \
  qemu-aarch64-static "$SYSROOT/usr/bin/python$PYVER" -c "$PROBE" "$BUILD" "$WORK/x.npy" 2>"$WORK/arm.stderr" | tail -1) || {
  say "aarch64 run failed:"; tail -5 "$WORK/arm.stderr" >&2; exit 1; }

"$HOST_PY" - "$X86" "$ARM" "$WORK/y.npy" <<'EOF'
import json, sys
import numpy as np
x86, arm, y = json.loads(sys.argv[1]), json.loads(sys.argv[2]), np.load(sys.argv[3])
a, b = np.array(x86["top1"]), np.array(arm["top1"])
agree = float((a == b).mean())
print(f"x86-64 : {x86['machine']} {x86['backend']} {x86['artifact']} accuracy {(a == y).mean():.4f} ({x86['seconds']:.2f} s)")
print(f"aarch64: {arm['machine']} {arm['backend']} {arm['artifact']} accuracy {(b == y).mean():.4f} ({arm['seconds']:.2f} s under qemu)")
print(f"top-1 agreement aarch64 vs x86-64: {agree:.4f} on {len(a)} digits test images; TensorFlow imported on arm: {arm['heavy'] or 'no'}")
ok = arm["machine"] == "aarch64" and agree == 1.0 and not arm["heavy"]
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
