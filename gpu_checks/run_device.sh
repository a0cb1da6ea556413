#!/usr/bin/env bash
# The one device check to run on a lent GPU machine (see gpu_checks/device_check.py):
#   gpu_checks/run_device.sh            # results in $OUT/device_check.json when OUT is set
# Needs python3 with torch (CUDA), transformers, peft, accelerate, PyYAML and
# nvidia-ml-py; nothing of SparkTrainer's server stack and nothing installed. About 3-5
# minutes on an H200; it stops itself after DEVICE_CHECK_TIMEOUT seconds (360). Without a
# GPU it runs the same steps smaller on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/sdk/python/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON="${PYTHON:-python3}"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/device_check.log") 2>&1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
exec timeout "${DEVICE_CHECK_TIMEOUT:-360}" "$PYTHON" gpu_checks/device_check.py
