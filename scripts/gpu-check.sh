#!/usr/bin/env bash
# The GPU checks, as one command for a machine with an NVIDIA GPU (e.g. the lent device):
#   bash scripts/gpu-check.sh [OUT_DIR]
# Installs the CUDA build of PyTorch into .venv, runs the GPU-marked tests and the
# SD 1.5-architecture throughput sweep, and writes the figures to OUT_DIR (default ./gpu-results).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv"
make install TORCH=torch >/dev/null
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -m gpu -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/gpu-tests.txt"
.venv/bin/python -m bench.gpu_throughput --out "$out/gpu-throughput.json" 2>&1 | tee "$out/gpu-throughput.txt"
.venv/bin/python -m bench.gpu_throughput --compile --batches 1,8 --out "$out/gpu-throughput-compiled.json" 2>&1 \
  | tee "$out/gpu-throughput-compiled.txt"
.venv/bin/python -m bench.single_file_load --architecture sdxl --device cuda --out "$out/single-file-sdxl.json" 2>&1 \
  | tee "$out/single-file-sdxl.txt"
