#!/usr/bin/env bash
# Train the ML-100K configuration on CUDA (bf16 autocast) and on this machine's CPU; print both epoch times.
# Meant for a machine with an NVIDIA GPU; needs ../shared/data/ml-100k beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || { python3 -m venv .venv && .venv/bin/pip install -q -e . ; }
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PY" bench/epoch_time.py --device cuda --epochs 3
"$PY" bench/epoch_time.py --device cpu --epochs 2
