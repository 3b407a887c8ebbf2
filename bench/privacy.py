"""What user-level differential privacy costs on ML-100K: NDCG@10, HR@10 and RMSE at several ε, and without DP.

Protocol: the default one (leave-last-out, full ranking, the user's earlier items excluded, held-out
events asked at the stand-in time). Every variant and seed trains in its own subprocess, one torch
thread each. The private runs train a fixed number of epochs and keep the last one (no selection on
validation events), with Poisson-sampled batches of ``--dp-batch`` users on average; the run without DP
trains with the defaults (early stopping on validation NDCG@10, rating refit).

    python bench/privacy.py [--seeds 3] [--epsilons 1,4,8] [--dp-epochs 10] [--dp-batch 128] [--dp-lr 0.002]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ml100k import DEFAULT_DATA, _fmt, build_dataset  # noqa: E402

METRICS = ("NDCG@10", "HR@10", "RMSE")


def settings(epsilon: float | None, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """The run settings of one variant: the defaults without DP, a fixed private schedule with it."""
    train: dict[str, object] = {"seed": seed, "threads": 1}
    if epsilon is not None:
        train.update(
            epochs=args.dp_epochs,
            batch_size=args.dp_batch,
            lr=args.dp_lr,
            privacy={"epsilon": epsilon, "delta": None, "max_grad_norm": args.clip},
        )
    return {"exclude_seen": True, "device": "cpu", "train": train}


def run_one(epsilon: float | None, seed: int, workspace: Path, args: argparse.Namespace) -> dict[str, object]:
    """Train and test one variant in this process."""
    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    events, items = ws.events("ml100k"), ws.items("ml100k")
    started = time.perf_counter()
    rec = Recommender.from_settings(settings(epsilon, seed, args))
    rec.fit(events, items, cache_dir=workspace / "cache" / "embeddings")
    out = {k: v for k, v in rec.evaluate("test").items() if k in METRICS}
    out["train_seconds"] = time.perf_counter() - started
    out["epochs"] = len(rec.history_)
    out["epoch_seconds"] = statistics.median(h["seconds"] for h in rec.history_)
    spent = getattr(rec, "privacy_", None) or {}
    out["epsilon_spent"] = spent.get("epsilon")
    out["noise_multiplier"] = spent.get("noise_multiplier")
    return out


def _child(epsilon: float | None, seed: int, workspace: Path, argv: list[str]) -> dict[str, object]:
    cmd = [sys.executable, __file__, *argv, "--child", str(epsilon), "--seed", str(seed), "--workspace", str(workspace)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"epsilon {epsilon} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epsilons", default="1,4,8", help="comma-separated targets; 'none' (without DP) always runs")
    p.add_argument("--dp-epochs", type=int, default=10)
    p.add_argument("--dp-batch", type=int, default=128, help="expected users per private step")
    p.add_argument("--dp-lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0, help="max_grad_norm: each user's gradient bound")
    p.add_argument("--skip-plain", action="store_true", help="only the private variants")
    p.add_argument("--workspace", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        eps = None if args.child == "None" else float(args.child)
        print(json.dumps(run_one(eps, args.seed, args.workspace, args), default=float))
        return 0
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="privacy-ws-"))
    passed = [
        f"--dp-epochs={args.dp_epochs}",
        f"--dp-batch={args.dp_batch}",
        f"--dp-lr={args.dp_lr}",
        f"--clip={args.clip}",
    ]
    variants: list[float | None] = [] if args.skip_plain else [None]
    variants += [float(e) for e in args.epsilons.split(",") if e]
    rows = []
    try:  # the data's license: a temporary workspace does not outlive the run
        if not (workspace / "behaviorlens.duckdb").is_file():
            build_dataset(args.data, workspace)
        for eps in variants:
            results = [_child(eps, s, workspace, passed) for s in range(args.seeds)]
            rows.append((eps, results))
            print(f"done epsilon {eps}: {json.dumps(results, default=float)}", file=sys.stderr, flush=True)
    finally:
        if args.workspace is None:
            shutil.rmtree(workspace, ignore_errors=True)
    print(
        f"ML-100K, {args.seeds} seed(s), 1 torch thread per run, cores {os.cpu_count()}; protocol: full ranking, "
        "earlier items excluded, leave-last-out (test), held-out events asked at the stand-in time; "
        f"private runs: {args.dp_epochs} epochs, expected batch {args.dp_batch}, lr {args.dp_lr}, clip {args.clip}, "
        "delta = 1/users"
    )
    head = "| ε target | ε spent | noise σ | NDCG@10 | HR@10 | RMSE | epochs | s/epoch | train s |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for eps, results in rows:
        cells = [_fmt([r.get(m) for r in results]) for m in METRICS]
        spent = _fmt([r["epsilon_spent"] for r in results]) if eps is not None else "—"
        sigma = f"{results[0]['noise_multiplier']:.3f}" if eps is not None else "—"
        epochs = statistics.median(float(r["epochs"]) for r in results)
        per_epoch = statistics.median(float(r["epoch_seconds"]) for r in results)
        wall = statistics.median(float(r["train_seconds"]) for r in results)
        name = "no DP" if eps is None else f"{eps:g}"
        print(f"| {name} | {spent} | {sigma} | {' | '.join(cells)} | {epochs:.0f} | {per_epoch:.1f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
