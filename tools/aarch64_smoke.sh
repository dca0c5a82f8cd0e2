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
# The sysroot comes from tools/aarch64_sysroot.sh (run by tools/install-dev.sh, as root).
# Work dir: $EDGECNN_AARCH64_WORK (default /tmp/edgecnn-aarch64); reused between runs.
set -euo pipefail

# shellcheck source=tools/aarch64_env.sh
source "$(dirname "$0")/aarch64_env.sh"
N_IMAGES=${N_IMAGES:-200}

if [ ! -x "$SYSROOT/usr/bin/python$PYVER" ] || [ ! -d "$SITE/ai_edge_litert" ] || ! command -v qemu-aarch64-static >/dev/null; then
  echo "error: no aarch64 sysroot in $SYSROOT; make it with: sudo bash tools/aarch64_sysroot.sh (tools/install-dev.sh does)" >&2
  exit 2
fi

# 5. A model and real test images
BUILD=${1:-}
if [ -z "$BUILD" ]; then
  BUILD=$WORK/build
  if [ ! -f "$BUILD/manifest.json" ]; then
    say "training and converting a small digits CNN (host, TensorFlow)"
    (cd "$REPO" && TF_CPP_MIN_LOG_LEVEL=3 "$HOST_PY" -c "
import sys; sys.path.insert(0, 'tests')
from pathlib import Path
from builds import make_build
make_build(Path('$BUILD.tmp'), 'digits', 'cnn_small', epochs=5)
" >/dev/null 2>&1) && rm -rf "$BUILD" && mv "$BUILD.tmp" "$BUILD"
  fi
fi
(cd "$REPO" && "$HOST_PY" -c "
import numpy as np
from edgecnn.data import adapt_images, load_dataset
from edgecnn.manifest import load_manifest
ds = load_dataset('digits', seed=0)
shape = load_manifest('$BUILD').input.shape
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
out = {"machine": platform.machine(), "backend": r.backend_name, "artifact": r.artifact.path,
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
