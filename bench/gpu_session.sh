#!/usr/bin/env bash
# The GPU checks of issue 26 as one prepared run, for a session that is lent a device (see BENCHMARKS.md, "On a
# GPU"). Each part writes its output to $OUT/PART.txt (default folder: gpu-session) under a time limit of its own,
# and prints its last lines; a part that fails or runs out of time does not stop the next. A session has 15
# minutes of device time in all, the machine's start included, so the parts come in two calls of the most urgent:
#
#   bash bench/gpu_session.sh machine tests decode profile    # at most 6.7 minutes
#   bash bench/gpu_session.sh mfu graphs                      # at most 5 minutes, on the same warm machine
#   bash bench/gpu_session.sh loop                            # 2.5 minutes more, if the budget allows
#
# Parts: machine (nvidia-smi, versions), tests (the CUDA tests: decode agreement, CompiledDecoder, the trainer's
# CUDA graphs, and the CPU tests of the GPU rules), decode and mfu (bench/gpu.py), profile (bench/profile_step.py:
# the SCAN demo model's eager step), graphs (the same step compiled with CUDA graphs), loop (bench/loop.py on
# CUDA). Nothing is written to BENCHMARKS.md there: copy the tables from $OUT, with the machine and date they name.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=src:bench PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2 began=$SECONDS status
    shift 2
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    status=$?
    echo "== $name: exit $status after $((SECONDS - began)) s (limit $limit s)"
    tail -n 25 "$OUT/$name.txt"
}

run() {
    case $1 in
    machine) part machine 20 bash -c "nvidia-smi; $PY -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'" ;;
    tests) part tests 200 "$PY" -m pytest -q -p no:cacheprovider -k "gpu or cuda" tests/test_decode_agreement.py tests/test_compiled_decoder.py tests/test_compile.py ;;
    decode) part decode 120 "$PY" bench/gpu.py decode --rounds 3 --no-write ;;
    profile) part profile-eager 60 "$PY" bench/profile_step.py --device cuda ;;
    graphs) part profile-graphs 120 "$PY" bench/profile_step.py --device cuda --compile --mode reduce-overhead ;;
    mfu) part mfu 180 "$PY" bench/gpu.py mfu --no-write ;;
    loop) part loop 150 "$PY" bench/loop.py --device cuda --steps 300 --rounds 2 --no-write ;;
    *) echo "unknown part $1 (machine, tests, decode, profile, graphs, mfu, loop)" >&2 && return 2 ;;
    esac
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(machine tests decode profile mfu graphs loop)
for p in "${parts[@]}"; do run "$p"; done
