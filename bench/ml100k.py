"""ML-100K benchmark: the multi-task model against single-head variants and baselines.

Protocol (DESIGN §9): each user's ratings sorted by (timestamp, item_id); last = test,
second-to-last = valid, rest = train; all items scored, the user's earlier items
excluded; HR@10, NDCG@10, MRR@10 of the held-out item (full ranking), RMSE/MAE of
its rating. Every variant runs in its own subprocess so that peak memory is its own.

    python bench/ml100k.py [--seeds 3] [--data ../shared/data/ml-100k] [--only multitask,...]
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

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import schema as S  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"
VARIANTS = ("multitask", "engagement-only", "rating-only", "popularity", "bpr-mf")
METRICS = ("HR@10", "NDCG@10", "MRR@10", "RMSE", "MAE")


def build_dataset(data_dir: Path, workspace: Path) -> str:
    """Ingest u.data (every rating a `rate` event) and u.item (title + genre names) into a workspace."""
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    genres = [line.split("|")[0] for line in (data_dir / "u.genre").read_text("latin-1").splitlines() if line.strip()]
    items = pd.read_csv(data_dir / "u.item", sep="|", header=None, encoding="latin-1", dtype={0: str})
    flags = items.iloc[:, 5 : 5 + len(genres)].to_numpy()
    names = [", ".join(g for g, f in zip(genres, row) if f == 1) for row in flags]
    tmp = Path(tempfile.mkdtemp(prefix="ml100k-"))
    try:  # the derived catalogue lives only for the ingest (the data's license)
        pd.DataFrame({"item_id": items[0], "title": items[1], "genres": names}).to_csv(tmp / "items.csv", index=False)
        ingest(
            Workspace(workspace),
            data_dir / "u.data",
            tmp / "items.csv",
            IngestOptions(
                name="ml100k", columns=[S.USER_ID, S.ITEM_ID, S.VALUE, S.TIMESTAMP], rating_range=(1, 5), keep_ids=True
            ),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "ml100k"


def run_variant(variant: str, seed: int, workspace: Path) -> dict[str, object]:
    """Train and test one variant in this process; returns metrics and wall time."""
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    events, items = ws.events("ml100k"), ws.items("ml100k")
    started = time.perf_counter()
    if variant in ("popularity", "bpr-mf"):
        from bench.baselines import bpr_mf, popularity

        metrics = (popularity if variant == "popularity" else bpr_mf)(events, seed)
    else:
        from core.model.recommender import Recommender

        heads = {"multitask": "both", "engagement-only": "engagement", "rating-only": "rating"}[variant]
        rec = Recommender(heads=heads, train={"seed": seed}, device="cpu")
        rec.fit(events, items, cache_dir=workspace / "cache" / "embeddings")
        rank_by_rating = heads == "rating"
        metrics = rec.evaluate("test") if not rank_by_rating else _rank_by_rating(rec)
        metrics["epochs"] = len(rec.history_)
        metrics["epoch_seconds"] = statistics.median(h["seconds"] for h in rec.history_)
    metrics["train_seconds"] = time.perf_counter() - started
    return metrics


def _rank_by_rating(rec: object) -> dict[str, object]:
    """The rating-only variant ranks candidates by predicted rating (its engagement head is untrained)."""
    from bench.baselines import rating_ranking

    return rating_ranking(rec)


def _child(variant: str, seed: int, workspace: Path) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", variant, "--seed", str(seed), "--workspace", str(workspace)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode != 0:
        raise SystemExit(f"{variant} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, default=3, help="seeds of the multi-task model")
    p.add_argument("--only", default=",".join(VARIANTS))
    p.add_argument("--workspace", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = run_variant(args.child, args.seed, args.workspace)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result, default=float))
        return 0
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="ml100k-ws-"))
    build_dataset(args.data, workspace)
    rows = []
    for variant in [v for v in args.only.split(",") if v]:
        seeds = range(args.seeds) if variant == "multitask" else [0]
        results = [_child(variant, s, workspace) for s in seeds]
        rows.append((variant, results))
        print(f"done {variant}: " + json.dumps(results[-1], default=float), file=sys.stderr, flush=True)
    _print_table(rows)
    return 0


def _print_table(rows: list[tuple[str, list[dict[str, object]]]]) -> None:
    print(
        f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, cores {os.cpu_count()}; "
        "protocol: full ranking, earlier items of any behavior excluded, leave-last-out (test split)"
    )
    head = f"| variant | runs | {' | '.join(METRICS)} | train s | s/epoch | peak MB |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for variant, results in rows:
        cells = [_fmt([r.get(m) for r in results]) for m in METRICS]
        wall = statistics.median(float(r["train_seconds"]) for r in results)
        epoch = [r.get("epoch_seconds") for r in results if r.get("epoch_seconds")]
        peak = max(float(r["peak_rss_mb"]) for r in results)
        ep = f"{statistics.median(epoch):.1f}" if epoch else "—"
        print(f"| {variant} | {len(results)} | {' | '.join(cells)} | {wall:.0f} | {ep} | {peak:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
