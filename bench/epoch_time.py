"""Epoch time of the default configuration, against another revision measured in the same run.

    python bench/epoch_time.py [--dataset sample|ml100k] [--epochs 3] [--threads N] [--baseline REV]
        [--full] [--device auto|cpu|cuda]

Each measurement runs in its own subprocess: one for this checkout and, with ``--baseline REV``
(e.g. the previous main), one for that revision, checked out into a temporary git worktree. The
baseline child gets the environment as it was before ``core`` set anything (no OpenMP wait policy
unless the caller set one), so the two differ only by their code. Printed: the thread settings
(torch intra-op and inter-op threads, OpenMP wait policy, DuckDB threads), the median epoch time,
the first epoch, the whole fit (with ``--full``: the default number of epochs and early stopping,
the rating refit included), process CPU time split into user and system, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # before core sets anything
ML100K = REPO.parent / "shared" / "data" / "ml-100k"


def child(args: argparse.Namespace) -> None:
    """Measure this process's checkout (cwd) and print one JSON line."""
    sys.path.insert(0, str(Path.cwd()))
    import torch

    from core.ingest.sample import ensure_sample_dataset
    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws_dir = Path(tempfile.mkdtemp(prefix="epoch-ws-"))
    ws = Workspace(ws_dir)
    if args.dataset == "sample":
        ensure_sample_dataset(ws)
    else:
        sys.path.insert(0, str(REPO))  # the bench helpers of this checkout read the data the same way
        from bench.ml100k import build_dataset

        build_dataset(args.data, ws_dir)
    train: dict[str, object] = {} if args.full else {"epochs": args.epochs, "patience": args.epochs + 1}
    if args.threads:
        train["threads"] = args.threads
    rec = Recommender(device=args.device, train=train)
    cpu0, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    rec.fit(ws.events(args.dataset), ws.items(args.dataset), cache_dir=ws_dir / "cache")
    wall, cpu1 = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    seconds = [h["seconds"] for h in rec.history_]
    duck = ws.query("SELECT current_setting('threads') AS t")["t"].iloc[0]
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(0) if rec.device_.type == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (runtime default: active)"),
                "duckdb_threads": int(duck),
                "median_epoch_s": statistics.median(seconds),
                "first_epoch_s": seconds[0],
                "epochs": len(seconds),
                "fit_s": wall,
                "user_s": cpu1.ru_utime - cpu0.ru_utime,
                "system_s": cpu1.ru_stime - cpu0.ru_stime,
                "valid_ndcg10": rec.history_[rec.best_epoch_ - 1]["valid_NDCG@10"] if rec.best_epoch_ else None,
            }
        )
    )
    shutil.rmtree(ws_dir, ignore_errors=True)


def measure(cwd: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--dataset", args.dataset]
    cmd += ["--epochs", str(args.epochs), "--device", args.device, "--data", str(args.data)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    cmd += ["--full"] if args.full else []
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"measurement in {cwd} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def show(name: str, m: dict[str, object]) -> None:
    print(
        f"{name}: median epoch {m['median_epoch_s']:.2f} s over {m['epochs']} (first {m['first_epoch_s']:.2f} s), "
        f"fit {m['fit_s']:.1f} s, CPU user {m['user_s']:.1f} s / system {m['system_s']:.1f} s, "
        f"best valid NDCG@10 {m['valid_ndcg10']}; device {m['device']}, torch threads {m['threads']} "
        f"(inter-op {m['interop_threads']}), OMP_WAIT_POLICY {m['omp_wait_policy']}, "
        f"DuckDB threads {m['duckdb_threads']}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("sample", "ml100k"), default="ml100k")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--full", action="store_true", help="train with the default epochs and early stopping")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--data", type=Path, default=ML100K)
    p.add_argument("--baseline", metavar="REV", help="also measure this git revision, in the same run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    current = measure(REPO, args, dict(os.environ))
    show("this checkout", current)
    if args.baseline:
        tree = Path(tempfile.mkdtemp(prefix="epoch-baseline-")) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline], check=True)
        try:
            base = measure(tree, args, CLEAN_ENV)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        show(f"baseline {args.baseline}", base)
        ratio = float(base["median_epoch_s"]) / float(current["median_epoch_s"])  # type: ignore[arg-type]
        print(f"median epoch: this checkout is {ratio:.2f}x the baseline's speed")
        fit_ratio = float(base["fit_s"]) / float(current["fit_s"])  # type: ignore[arg-type]
        print(f"whole fit: {fit_ratio:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
