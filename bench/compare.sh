#!/usr/bin/env bash
# gpu-siamese beside TensorFlow and PyTorch, in one run on this machine: the tutorial's training step
# (same tower, Keras' asymmetric 'same' padding, batch 64 pairs, same number of steps) in each, and one
# table with the ratios. Numbers on a shared machine are noisy: compare the ratios of one run.
#
#   bench/compare.sh                 # TensorFlow CPU, PyTorch CPU, gpu-siamese on the adapter it picks
#   STEPS=200 REPEATS=5 bench/compare.sh
#   PYTHON=/path/to/python bench/compare.sh   # use an environment that already has the frameworks
#   TORCH_DEVICE=cuda bench/compare.sh         # PyTorch on the GPU, beside gpu-siamese on the same card
#
# The frameworks go into bench/.venv from the package registry (PyPI) the first time: tensorflow-cpu
# and torch (PyPI's torch wheel carries CUDA libraries; on a machine without a GPU it runs on the CPU,
# and TORCH_DEVICE=cuda times it on the GPU instead; see bench/peers.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-100}
REPEATS=${REPEATS:-5}
WARMUP=${WARMUP:-10}
OUT=${OUT:-bench/results}
TORCH_DEVICE=${TORCH_DEVICE:-cpu}
mkdir -p "$OUT"

if [ -z "${PYTHON:-}" ]; then
    PYTHON=bench/.venv/bin/python
    if [ ! -x "$PYTHON" ]; then
        python3 -m venv bench/.venv
    fi
    if ! "$PYTHON" -c "import tensorflow, torch" 2>/dev/null; then
        echo "installing tensorflow-cpu and torch into bench/.venv (a few GB, once)" >&2
        "$PYTHON" -m pip install --quiet --upgrade pip
        "$PYTHON" -m pip install --quiet tensorflow-cpu torch numpy
    fi
fi

cargo build --release --quiet
echo "timing TensorFlow..." >&2
"$PYTHON" bench/peers.py tensorflow --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" 2>/dev/null | tail -1 > "$OUT/tensorflow.json"
echo "timing PyTorch..." >&2
"$PYTHON" bench/peers.py pytorch --device "$TORCH_DEVICE" --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" 2>/dev/null | tail -1 > "$OUT/pytorch.json"
echo "timing gpu-siamese..." >&2
./target/release/gpu-siamese bench --json --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" 2>/dev/null > "$OUT/gpu-siamese.json"

"$PYTHON" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
ours = json.load(open(f"{out}/gpu-siamese.json"))
rows = [(f"gpu-siamese ({ours['adapter'].split(' (')[0]})", ours["ms_per_step"])]
for name in ("tensorflow", "pytorch"):
    peer = json.load(open(f"{out}/{name}.json"))
    rows.append((peer["framework"], peer["ms_per_step"]))
base = ours["ms_per_step"]["median"]
print(f"tutorial tower, batch {ours['batch_pairs']} pairs, {ours['steps']} steps x {ours['repeats']} repeats")
print(f"| {'what':<46} | {'ms/step (median)':>16} | {'min':>7} | {'max':>7} | {'s/epoch':>7} | {'vs gpu-siamese':>14} |")
print(f"|{'-' * 48}|{'-' * 18}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 15}:|")
for what, t in rows:
    print(f"| {what:<46} | {t['median']:>16.1f} | {t['min']:>7.1f} | {t['max']:>7.1f} | {t['median'] * 1875 / 1000:>7.1f} | {t['median'] / base:>13.2f}x |")
print()
print("per kernel (gpu-siamese):")
for k in ours["kernels"]:
    print(f"  {k['name']:<36} {k['ms']:>8.3f} ms {100 * k['share']:>5.1f}%  {k['gflop_per_s']:>7.2f} GFLOP/s {k['gb_per_s']:>6.2f} GB/s")
PY
