#!/usr/bin/env bash
# One GPU check, meant for a machine with an NVIDIA GPU (about 10 minutes on one H100):
#  1. ML-100K on CUDA (bf16 autocast) and on this machine's CPU: epoch times (bench/epoch_time.py);
#  2. ML-1M with the text encoder fine-tuned by LoRA, on CUDA, a few epochs: epoch time, peak GPU memory and the
#     test metrics (bench/gpu_ml1m.sh -> bench/ml1m.py). EPOCHS (default 3) sets its epoch count.
# Needs ../shared/data/ml-100k and ../shared/data/ml-1m beside the checkout (never in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
test -x "$PY" || { python3 -m venv .venv && .venv/bin/pip install -q -e . ; }
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PY" bench/epoch_time.py --device cuda --epochs 3
"$PY" bench/epoch_time.py --device cpu --epochs 2
PY="$PY" bash bench/gpu_ml1m.sh --only model --epochs "${EPOCHS:-3}" --config '{"encoder": {"finetune": "lora"}}'
