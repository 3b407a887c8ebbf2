"""Median epoch time of the default ML-100K configuration on one device.

python bench/epoch_time.py --device cuda --epochs 3 [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ml100k import DEFAULT_DATA, build_dataset  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = p.parse_args()
    import torch

    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws_dir = Path(tempfile.mkdtemp(prefix="epoch-ws-"))
    build_dataset(args.data, ws_dir)
    ws = Workspace(ws_dir)
    train = {"epochs": args.epochs, "patience": args.epochs + 1}
    if args.threads:
        train["threads"] = args.threads
    rec = Recommender(device=args.device, train=train)
    started = time.perf_counter()
    rec.fit(ws.events("ml100k"), ws.items("ml100k"), cache_dir=ws_dir / "cache")
    seconds = [h["seconds"] for h in rec.history_]
    name = torch.cuda.get_device_name(0) if rec.device_.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(
        f"device {rec.device_.type} ({name}): median epoch {statistics.median(seconds):.2f} s over "
        f"{len(seconds)} epochs (first {seconds[0]:.2f} s), total {time.perf_counter() - started:.1f} s, "
        f"valid NDCG@10 {rec.history_[-1]['valid_NDCG@10']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
