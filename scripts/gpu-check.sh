#!/usr/bin/env bash
# The GPU checks, as one command for an NVIDIA machine that reaches no package index:
#   make wheelhouse                  # here, with the index: ./wheelhouse (Python 3.12, manylinux x86-64)
#   bash scripts/gpu-check.sh [OUT]  # there, with ./wheelhouse copied beside the checkout
# Installs the wheels with --no-index into a venv that sees the machine's own CUDA torch
# (--system-site-packages), then runs tests/gpu, `sdfarm bench gpu-farm` (SD 1.5 architecture built
# from worker/model_build/release.py, batch 8 and 16) and the throughput sweep (eager, channels-last
# and fused QKV projections, each compared with eager on the same seeds), each under a time
# limit inside an 8-minute deadline (GPU_CHECK_SECONDS), and writes OUT/gpu-check.json and the BENCHMARKS.md tables made from it, OUT/gpu-tables.md
# (default OUT: gpu-results). Sized for about 8 minutes on an H200 (not yet run on one).
# GPU_CHECK_TUNE sets the farm worker's SDFARM_TUNE (default: the three uncompiled configurations, which
# tune in seconds; `auto` adds the compiled candidates, minutes more on the first start).
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(mkdir -p "${1:-gpu-results}" && cd "${1:-gpu-results}" && pwd)"
log="$out/gpu-check.log"
python="${PYTHON:-python3}"
tune="${GPU_CHECK_TUNE:-eager,channels_last,fused_qkv}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
: >"$log"
steps=()

deadline=$(($(date +%s) + ${GPU_CHECK_SECONDS:-470}))  # the whole check ends within 8 minutes

step() {  # step NAME SECONDS COMMAND...: run with a time limit (never past the deadline), log it, remember its outcome
  local name="$1" limit="$2" started rc
  shift 2
  started=$(date +%s)
  if ((deadline - started < 10)); then
    echo "=== $name: skipped, the check's 8 minutes are spent" | tee -a "$log"
    steps+=("{\"step\": \"$name\", \"exit\": 124, \"seconds\": 0, \"skipped\": true}")
    return
  fi
  if ((deadline - started < limit)); then limit=$((deadline - started)); fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  echo "=== $name: exit $rc in $(($(date +%s) - started))s" | tee -a "$log"
  steps+=("{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $(($(date +%s) - started))}")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/nvidia-smi.csv" 2>>"$log"
step install 120 bash -c "
  set -e
  '$python' -m venv --system-site-packages .gpu-venv
  '$python' scripts/wheelhouse.py --print-requirements >.gpu-venv/requirements.txt
  .gpu-venv/bin/python -m pip install --quiet --no-index --no-cache-dir --find-links wheelhouse -r .gpu-venv/requirements.txt
  .gpu-venv/bin/python -c 'import torch, diffusers, celery, sdfarm.cli; assert torch.cuda.is_available(), torch.__version__'
"
venv_python="$PWD/.gpu-venv/bin/python"
SDFARM_TUNE=eager,channels_last step gpu-tests 180 "$venv_python" -m pytest -q -p no:cacheprovider -m gpu tests/gpu \
  --junitxml="$out/gpu-tests.xml"
step gpu-farm-batch-8 210 "$venv_python" -m sdfarm.cli bench gpu-farm --batch 8 --images 32 --rounds 2 \
  --tune "$tune" --out "$out/gpu-farm-batch-8.json"
step gpu-farm-batch-16 150 "$venv_python" -m sdfarm.cli bench gpu-farm --batch 16 --images 32 --rounds 2 --quick \
  --tune "$tune" --out "$out/gpu-farm-batch-16.json"
step gpu-throughput 150 "$venv_python" -m bench.gpu_throughput --dtype float16 --batches 1,8,16 --steps 30 \
  --variants eager,channels_last,fused_qkv \
  --repeats 2 --out "$out/gpu-throughput.json"
# Batch 1 through CUDA graphs (the UNet compiled in reduce-overhead mode), if the deadline leaves time.
step gpu-throughput-graphs 150 "$venv_python" -m bench.gpu_throughput --dtype float16 --batches 1 --steps 30 \
  --variants eager,cuda_graphs --repeats 3 --out "$out/gpu-throughput-graphs.json"

# One JSON of everything: the machine, each step's outcome, and the figures the steps wrote.
printf '%s\n' "${steps[@]}" >"$out/steps.jsonl"
"$python" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
summary = {"nvidia_smi": (out / "nvidia-smi.csv").read_text().strip() if (out / "nvidia-smi.csv").exists() else None,
           "steps": [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line]}
for name in ("gpu-farm-batch-8", "gpu-farm-batch-16", "gpu-throughput", "gpu-throughput-graphs"):
    path = out / f"{name}.json"
    summary[name] = json.loads(path.read_text()) if path.exists() else None
(out / "gpu-check.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary["steps"]))
EOF
"$python" -m bench.gpu_report "$out/gpu-check.json" | tee "$out/gpu-tables.md"
grep -q '"exit": [1-9]' "$out/steps.jsonl" && exit 1
exit 0
