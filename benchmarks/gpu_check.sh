#!/usr/bin/env bash
# One GPU check, one JSON (benchmarks/results/gpu_check.json); see benchmarks/gpu_check.py.
#   bash benchmarks/gpu_check.sh              # on a CUDA machine with PyTorch; under 8 min (--budget 470 s)
#   bash benchmarks/gpu_check.sh --dry-run    # on any machine: checks the plan on the CPU
# mcaclip need not be installed: it runs from this checkout. Python packages the machine lacks
# (open_clip_torch, ftfy, wcwidth on a bare PyTorch image) are installed from wheels in .whl/
# when that folder exists (see the README's GPU section for the pip download command).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/mcaclip-wheels .whl/*.whl
  export PYTHONPATH="/tmp/mcaclip-wheels${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout "${GPU_CHECK_TIMEOUT:-570}" "$PY" -m benchmarks.gpu_check "$@"
