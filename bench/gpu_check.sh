#!/usr/bin/env bash
# One prepared run on a lent GPU machine (issue: GPU measurements). Writes every result to
# $OUT as it goes, so a run cut short by its time limit still returns what it measured.
#
#   OUT=/tmp/out bash bench/gpu_check.sh          # on the device machine (run tool)
#   OUT=/tmp/out bash bench/gpu_check.sh --cpu    # here: the same steps, GPU parts skipped
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/steps.log"; }
PY=${PYTHON:-python3}
cpu_only=0
[[ "${1:-}" == "--cpu" ]] && cpu_only=1

log "python: $("$PY" --version 2>&1)"
if [[ $cpu_only == 0 ]]; then
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed"
  log "install (project + cupy-cuda12x + dask-cuda)"
  "$PY" -m pip install -q -e ".[test,gpu]" dask-cuda > "$OUT/install.log" 2>&1 \
    || log "install failed: see install.log"
fi
"$PY" - > "$OUT/versions.txt" 2>&1 <<'PY'
import importlib
for name in ("numpy", "cupy", "dask", "distributed", "dask_cuda", "zarr", "sklearn"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # noqa: BLE001 - a report, not a check
        print(name, "absent:", type(err).__name__)
try:
    import cupy
    print("driver", cupy.cuda.runtime.driverGetVersion(), "runtime", cupy.cuda.runtime.runtimeGetVersion())
    print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
except Exception as err:  # noqa: BLE001
    print("cupy device: none", type(err).__name__)
PY
log "versions: $(tr '\n' ';' < "$OUT/versions.txt")"

log "GPU tests"
timeout 240 "$PY" -m pytest -q tests/system/test_gpu.py tests/integration/test_float32.py \
    -p no:cacheprovider \
  > "$OUT/gpu_tests.txt" 2>&1
log "GPU tests rc=$? $(tail -1 "$OUT/gpu_tests.txt")"

if [[ $cpu_only == 1 ]]; then
  log "cpu mode: the benchmarks need cupy; done"
  exit 0
fi
log "local step + summary, N=1e7, D=32, K=64"
timeout 180 "$PY" bench/gpu.py --n 10000000 --d 32 --k 64 > "$OUT/gpu_step.txt" 2>&1
log "gpu.py rc=$?"
cat "$OUT/gpu_step.txt" >> "$OUT/steps.log"
log "done"
