#!/usr/bin/env bash
# The GPU figures of the performance work in one call on a GPU machine: the benchmark with
# `--device cuda` in bfloat16 (everything: transformers fp32/bf16 alongside, our bf16/fp16/auto,
# the compiled vision tower and decode step, CUDA graphs for the step, floors, folder throughput)
# and in float16 (the main rows only), each under its own time limit.  Results land in $OUT
# (JSON and logs).  TensorFlow is left out: no tensorflow wheel fits what such a machine takes.
#
# Prepare here, then run there from the repository root:
#     make gpu-wheels                     # transformers 4.57.6 and its pins, into .whl/
#     bash scripts/gpu_check.sh           # there; carries .whl (ignored by git)
# Dry run on this CPU (checks the script, times nothing useful):
#     DEVICE=cpu SMOKE=1 OUT=/tmp/gpu-check bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
LIMIT_BF16=${LIMIT_BF16:-420}  # seconds; the device lends 15 minutes in all
LIMIT_FP16=${LIMIT_FP16:-150}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then  # the reference's pinned versions, not the image's
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/blip-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/blip-site${PYTHONPATH:+:$PYTHONPATH}
fi
smoke=()
[ -n "${SMOKE:-}" ] && smoke=(--smoke)

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda",
torch.version.cuda, "available", torch.cuda.is_available(), "transformers",
transformers.__version__)'
} 2>&1 | tee "$OUT/env.txt"

run() {  # run NAME LIMIT ARGS...: one benchmark run, its log and JSON in $OUT
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$PY" scripts/benchmark.py --device "$DEVICE" --no-tf "${smoke[@]}" \
        --out "$OUT/benchmark-$name.json" "$@" 2>&1 | tee "$OUT/benchmark-$name.log"
    echo "benchmark $name: exit ${PIPESTATUS[0]}" | tee -a "$OUT/env.txt"
}

run bf16 "$LIMIT_BF16" --dtype bfloat16 --repeats 3
run fp16 "$LIMIT_FP16" --dtype float16 --repeats 3 --no-lowp --no-compile
