#!/usr/bin/env bash
# gpu-siamese beside TensorFlow and PyTorch, in one run on this machine: one training step of the same
# tower (Keras' padding, both images of each pair, contrastive loss, Adam) in each, and one table with
# the ratios. Numbers on a shared machine are noisy: compare the ratios of one run.
#
#   bench/compare.sh                                    # the tutorial's tower, 28x28x1, batch 64 pairs
#   bench/compare.sh --arch "conv(32,3),maxpool,conv(64,3),maxpool,gap,dense(48)"
#   bench/compare.sh --image-size 48 --channels 3 --batch-size 32
#   STEPS=20 REPEATS=3 bench/compare.sh --arch tutorial-intended
#   PYTHON=/path/to/python bench/compare.sh             # an environment that already has the frameworks
#   TORCH_DEVICE=cuda bench/compare.sh                  # PyTorch on the GPU, beside gpu-siamese on the same card
#
# --arch takes a spec or a named tower (gpu-siamese towers lists them). The frameworks go into
# bench/.venv from the package registry (PyPI) the first time: tensorflow-cpu and torch (PyPI's torch
# wheel carries CUDA libraries; on a machine without a GPU it runs on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

ARCH=tutorial
IMAGE_SIZE=28x28
CHANNELS=1
BATCH=64
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=$2; shift 2 ;;
        --image-size) IMAGE_SIZE=$2; shift 2 ;;
        --channels) CHANNELS=$2; shift 2 ;;
        --batch-size) BATCH=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

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
BIN=./target/release/gpu-siamese
SPEC=$("$BIN" towers --spec "$ARCH")
PEER_ARGS=(--arch "$SPEC" --image-size "$IMAGE_SIZE" --channels "$CHANNELS" --batch "$BATCH" --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP")
echo "timing TensorFlow..." >&2
(cd bench && "../$PYTHON" peers.py tensorflow "${PEER_ARGS[@]}" 2>/dev/null | tail -1) > "$OUT/tensorflow.json"
echo "timing PyTorch..." >&2
(cd bench && "../$PYTHON" peers.py pytorch --device "$TORCH_DEVICE" "${PEER_ARGS[@]}" 2>/dev/null | tail -1) > "$OUT/pytorch.json"
echo "timing gpu-siamese..." >&2
"$BIN" bench --json --roofline --arch "$SPEC" --image-size "$IMAGE_SIZE" --channels "$CHANNELS" --batch-size "$BATCH" \
    --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" 2>/dev/null > "$OUT/gpu-siamese.json"

"$PYTHON" - "$OUT" "$IMAGE_SIZE" "$CHANNELS" <<'PY'
import json, sys
out, size, channels = sys.argv[1:4]
ours = json.load(open(f"{out}/gpu-siamese.json"))
rows = [(f"gpu-siamese ({ours['adapter'].split(' (')[0]})", ours["ms_per_step"])]
for name in ("tensorflow", "pytorch"):
    peer = json.load(open(f"{out}/{name}.json"))
    rows.append((peer["framework"], peer["ms_per_step"]))
base = ours["ms_per_step"]["median"]
print(f"{ours['tower']} on {size}x{channels}, batch {ours['batch_pairs']} pairs, {ours['steps']} steps x {ours['repeats']} repeats")
print(f"| {'what':<46} | {'ms/step (median)':>16} | {'min':>7} | {'max':>7} | {'vs gpu-siamese':>14} |")
print(f"|{'-' * 48}|{'-' * 18}:|{'-' * 8}:|{'-' * 8}:|{'-' * 15}:|")
for what, t in rows:
    print(f"| {what:<46} | {t['median']:>16.1f} | {t['min']:>7.1f} | {t['max']:>7.1f} | {t['median'] / base:>13.2f}x |")
r = ours.get("roofline")
print()
if r:
    print(f"adapter's ceilings, read in this run: {r['gflop_per_s']:.1f} GFLOP/s on multiply-add chains ({r['arithmetic_probe']}), {r['gb_per_s']:.1f} GB/s on a vec4 copy, {r['gfloat_loads_per_s']:.2f} G floats/s loaded by lanes")
print("per kernel (gpu-siamese), with the variant that ran:")
for k in ours["kernels"]:
    share = f"  {100 * k['arithmetic_share']:5.1f}% of the arithmetic ceiling" if k.get("arithmetic_share") is not None else ""
    if k.get("load_share") is not None:
        share += f", its loads {100 * k['load_share']:5.1f}% of its time"
    name = f"{k['name']} ({k['variant']})" if k.get("variant") else k["name"]
    print(f"  {name:<52} {k['ms']:>8.3f} ms {100 * k['share']:>5.1f}%  {k['gflop_per_s']:>7.2f} GFLOP/s {k['gb_per_s']:>6.2f} GB/s{share}")
PY
