# Shared settings of tools/aarch64_sysroot.sh and tools/aarch64_smoke.sh (sourced by both).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${EDGECNN_AARCH64_WORK:-/tmp/edgecnn-aarch64}
HOST_PY=${PYTHON:-python3}
SYSROOT=$WORK/sysroot
SITE=$SYSROOT/opt/edgecnn-site
PYVER=3.11
mkdir -p "$WORK"

say() { echo "[aarch64] $*" >&2; }
