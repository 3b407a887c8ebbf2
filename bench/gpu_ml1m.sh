#!/usr/bin/env bash
# Train the ML-1M benchmark once on CUDA (bench/ml1m.py --device cuda --seeds 1) and print its time to converge.
# Needs an NVIDIA GPU and the ML-1M files (not redistributable, never in the repo): DATA=folder with
# ratings.dat and movies.dat, default ../shared/data/ml-1m beside the checkout. Extra arguments go to
# bench/ml1m.py (e.g. --only model). The results JSON goes to $JSON (default: $OUT or /tmp, ml1m-gpu.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/ml-1m}
JSON=${JSON:-${OUT:-${TMPDIR:-/tmp}}/ml1m-gpu.json}
test -x "$PY" || { python3 -m venv .venv && .venv/bin/pip install -q -e . ; }
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
"$PY" bench/ml1m.py --device cuda --seeds 1 --data "$DATA" --json "$JSON" "$@"
"$PY" - "$JSON" <<'PY'
import json
import sys

for r in json.load(open(sys.argv[1]))["results"].get("model", []):
    to_best = r.get("seconds_to_best")
    print(
        f"time to converge ({r['device']}): best epoch {r.get('best_epoch')} of {r.get('epochs')} reached after "
        f"{'-' if to_best is None else f'{to_best:.0f}'} s of training (epochs incl. validation); whole fit "
        f"{r['train_seconds']:.0f} s, median epoch {r.get('epoch_seconds')} s, "
        f"{'stopped by the time budget' if r.get('cancelled') else 'early stopping or epoch limit'}; "
        f"test NDCG@10 {r['NDCG@10']:.4f}, HR@10 {r['HR@10']:.4f}; peak GPU memory {r.get('peak_gpu_mb', 0):.0f} MB"
    )
PY
