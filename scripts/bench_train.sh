#!/usr/bin/env bash
# Training throughput, fxtwin against PyTorch on CPU, side by side in one run (benchmark for the
# README, not part of the tests). Installs PyTorch from PyPI into .bench-venv on first use
# (about 6 GB and several minutes: PyPI's torch wheel carries CUDA libraries).
# Usage: scripts/bench_train.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
venv="${BENCH_VENV:-.bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch numpy
fi
cargo build --quiet --profile ci --bin fxtwin
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads: $threads"
fx=$(target/ci/fxtwin bench train --threads "$threads" --json)
pt=$("$venv/bin/python" bench/train_throughput.py --threads "$threads")
python3 - "$fx" "$pt" <<'PY'
import json, sys
fx = {r["preset"]: r for r in map(json.loads, sys.argv[1].splitlines())}
pt = {r["preset"]: r for r in map(json.loads, sys.argv[2].splitlines())}
print(f"{'preset':<10} {'fxtwin samples/s':>18} {'PyTorch samples/s':>18} {'ratio':>7}")
for name in fx:
    a, b = fx[name]["samples_per_s"], pt[name]["samples_per_s"]
    print(f"{name:<10} {a:>18,.0f} {b:>18,.0f} {a / b:>7.2f}")
PY
