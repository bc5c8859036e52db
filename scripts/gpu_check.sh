#!/usr/bin/env bash
# The CUDA checks and the GPU benchmark in one go, for the first session lent a device machine:
#   bash scripts/gpu_check.sh            (from the repository root; needs `make install` done there, ~5 minutes)
# It prints what it ran and each figure; copy them into docs/benchmarks.md with this command named.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
[ -x "$BIN/attnviz" ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test,bench]'; BIN=.venv/bin; }
"$BIN/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__)" || exit 1
out=$(mktemp -d)
echo "== one photo on cuda, every mode (exit status and the JSON line)"
for mode in dot general concat; do
  "$BIN/attnviz" run sample_images/coffee.png --device cuda -m "$mode" -o "$out/coffee.$mode.png" --json || echo "FAILED: $mode"
done
echo "== cuda and cpu draw the same map (weights correlation, same top-1)"
"$BIN/python" - <<'PY'
import numpy as np
from attnviz import Explainer
cpu = Explainer(device="cpu", backend="torch").explain("sample_images/chelsea.png")
gpu = Explainer(device="cuda", backend="torch").explain("sample_images/chelsea.png")
r = float(np.corrcoef(cpu.weights.ravel(), gpu.weights.ravel())[0, 1])
print(f"top-1 cpu {cpu.target.label} gpu {gpu.target.label}; weights correlation {r:.6f}")
assert cpu.target.index == gpu.target.index and r > 0.999, "cuda and cpu disagree"
PY
echo "== a folder on cuda (lanes, batches) and the Python batch API"
"$BIN/attnviz" run sample_images -o "$out/maps" --device cuda --batch-size 8 || echo "FAILED: folder on cuda"
echo "== the GPU benchmark (scripts/bench.py --device cuda, 3 rounds)"
"$BIN/python" scripts/bench.py --device cuda --rounds 3 --ways "attnviz --backend torch;pytorch-grad-cam;forward-only"
rm -rf "$out"
