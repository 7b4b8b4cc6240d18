#!/usr/bin/env bash
# The GPU checks of issue 26 as one prepared run, for a session that is lent a device (see BENCHMARKS.md, "On a
# GPU"). Each part writes its output to $OUT/PART.txt (default folder: gpu-session) under a time limit of its own,
# and prints its last lines; a part that fails or runs out of time does not stop the next.
#
#   bash bench/gpu_session.sh machine tests profile    # at most 9.5 minutes: one device call (10 minutes at most)
#   bash bench/gpu_session.sh loop decode mfu          # at most 8 minutes: the second call
#   bash bench/gpu_session.sh                          # every part, where one command may run 18 minutes
#
# Parts: machine (nvidia-smi, versions), tests (the CUDA variants of the decode-agreement and CompiledDecoder
# tests), profile (bench/profile_step.py: the SCAN demo model's step eager, compiled, and compiled with
# CUDA graphs), loop (bench/loop.py on CUDA), decode and mfu (bench/gpu.py). Nothing is written to BENCHMARKS.md
# there: copy the tables from $OUT, with the machine and date they name.
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
    machine) part machine 60 bash -c "nvidia-smi; $PY -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'" ;;
    tests) part tests 120 "$PY" -m pytest -q -p no:cacheprovider -k "gpu or cuda" tests/test_decode_agreement.py tests/test_compiled_decoder.py ;;
    profile)
        part profile-eager 90 "$PY" bench/profile_step.py --device cuda
        part profile-compiled 150 "$PY" bench/profile_step.py --device cuda --compile
        part profile-graphs 150 "$PY" bench/profile_step.py --device cuda --compile --mode reduce-overhead
        ;;
    loop) part loop 150 "$PY" bench/loop.py --device cuda --steps 300 --rounds 2 --no-write ;;
    decode) part decode 150 "$PY" bench/gpu.py decode --rounds 3 --no-write ;;
    mfu) part mfu 180 "$PY" bench/gpu.py mfu --no-write ;;
    *) echo "unknown part $1 (machine, tests, profile, loop, decode, mfu)" >&2 && return 2 ;;
    esac
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(machine tests profile loop decode mfu)
for p in "${parts[@]}"; do run "$p"; done
