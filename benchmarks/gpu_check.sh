#!/usr/bin/env bash
# GPU check for the ONNX engine: providers, CPU-vs-CUDA agreement, decode speed.
#
#   bash benchmarks/gpu_check.sh            (from the repository root; ~2-4 minutes)
#
# Needs the project installed with onnxruntime-gpu instead of onnxruntime:
#   pip uninstall -y onnxruntime && pip install -e '.[gpu]'
# (both packages install the same `onnxruntime` folder, so only one may be present).
# Uses $PYTHON, else .venv/bin/python, else python3. Prints a short table last; on a machine
# without a usable CUDA provider it says so and runs the CPU half only.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
echo "== GPU"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "nvidia-smi not found (no NVIDIA driver on this machine)"
fi
echo "== onnxruntime packages"
"$PYTHON" -m pip list 2>/dev/null | grep -i '^onnxruntime' || echo "pip list unavailable"
echo "== check"
exec timeout 290 "$PYTHON" benchmarks/gpu_check.py "$@"
