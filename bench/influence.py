"""Planted-truth recovery and runtime of global per-behavior influence on the bundled sample data.

    python bench/influence.py [--seeds 0 1] [--users 500] [--methods swap,loo,ig] [--threads 2]
                              [--workspace DIR] [--epochs N] [--model JSON]

For each training seed: train the default configuration on ``sample_data`` (or reuse the
run a previous call left in ``--workspace``), then run global influence with the behavior
swap, leave-one-out and Integrated Gradients over ``--users`` users, and print
Spearman(per_event, planted ``behavior_weights`` of ``sample_data/ground_truth.json``),
the runtime of each method, and the runtime of the behavior ablation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METHODS = ("swap", "loo", "ig")


def _run_for_seed(ws, seed: int, threads: int, epochs: int | None, model: dict[str, Any]) -> tuple[str, float]:
    """The run id of the default configuration trained with ``seed`` (reused when present), training seconds."""
    from core.runs.records import list_runs
    from core.runs.train import train_run

    runs = list_runs(ws)
    from bench.explain import defaults_digest  # a run is reused only while the defaults hold

    extra = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:6] if model else ""
    tag = f"bench-influence-s{seed}-e{epochs or 'default'}-{defaults_digest()}" + (f"-m{extra}" if extra else "")
    if len(runs) and (runs["run_id"] == tag).any():
        return tag, 0.0
    train = {"seed": seed, "threads": threads} | ({"epochs": epochs} if epochs else {})
    start = time.perf_counter()
    train_run(ws, "sample", {"device": "cpu", "train": train} | ({"model": model} if model else {}), run_id=tag)
    return tag, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of swap,loo,ig")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, help="cap the epochs (default: the default configuration's)")
    p.add_argument("--model", default="{}", help="model settings to change, as JSON (e.g. '{\"use_repeat\": false}')")
    p.add_argument("--workspace", type=Path, default=REPO / "bench" / "out" / "influence-ws")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "influence.json")
    args = p.parse_args()
    import os

    import torch
    from scipy.stats import spearmanr

    from core.explain.influence.report import InfluenceSettings, global_influence
    from core.ingest.sample import ensure_sample_dataset
    from core.runs.influence import item_categories
    from core.runs.run import open_run
    from core.store.workspace import Workspace

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    planted = json.loads((REPO / "sample_data" / "ground_truth.json").read_text())["behavior_weights"]
    ws = Workspace(args.workspace)
    ensure_sample_dataset(ws)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        run_id, train_s = _run_for_seed(ws, seed, args.threads, args.epochs, json.loads(args.model))
        rec = open_run(ws, run_id, "cpu").recommender()
        categories = item_categories(open_run(ws, run_id))
        metrics = rec.evaluate("test")
        print(
            f"seed {seed}: run {run_id} (trained in {train_s:.0f} s), HR@10 {metrics['HR@10']:.3f}, "
            f"NDCG@10 {metrics['NDCG@10']:.3f}",
            flush=True,
        )
        for method in [m for m in args.methods.split(",") if m in METHODS]:
            start = time.perf_counter()
            report = global_influence(rec, InfluenceSettings(args.users, method), categories=categories, ablation=False)
            seconds = time.perf_counter() - start
            names = [b for b in planted if b in report.per_event]
            truth = [planted[b] for b in names]
            rho = float(spearmanr([report.per_event[b] for b in names], truth)[0])
            rho_signed = float(spearmanr([report.per_behavior_signed[b] for b in names], truth)[0])
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "users": report.users,
                    "seconds": seconds,
                    "spearman_per_event": rho,
                    "spearman_signed": rho_signed,
                    "per_event": report.per_event,
                    "behaviors": names,
                    "HR@10": metrics["HR@10"],
                }
            )
            ranked = " > ".join(sorted(names, key=lambda b: -report.per_event[b]))
            print(
                f"  {method:<5} {seconds:6.1f} s  Spearman(per_event) {rho:+.3f}  signed {rho_signed:+.3f}  [{ranked}]",
                flush=True,
            )
        from core.explain.influence.ablation import behavior_ablation

        start = time.perf_counter()
        behavior_ablation(rec)
        print(
            f"  ablation ({len(rec.data_.behaviors) - 1} behaviors + full, {len(rec.split_.users)} test users): "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
    print("planted order: " + " > ".join(sorted(planted, key=lambda b: -planted[b])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"planted": planted, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
