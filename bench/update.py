"""Updating a run on newer data (``train --from``) against retraining from scratch, on MovieLens-1M.

ML-1M's ratings, in time order, are cut into 4 blocks of equal event counts. Blocks 1-2 are ingested
as dataset ``ml1m`` and a *base* run is trained on them. Block 3 is then appended to the same dataset
(``ingest b3 --append-to ml1m``: the base run keeps reading its own rows), and on blocks 1-3 an
*update* starts from the base run's weights (``train --from``) and trains ``--update-epochs`` epochs
on the users with block-3 events plus a replay share of the others (``train.update_replay``), while a
*retrain* trains the same settings from scratch (early stopping on validation NDCG@10, as by
default). Both are tested on block 4: for each user with a block-4 rating and a history before it,
the first block-4 rating is the target, asked at the stand-in time after the user's history (blocks
1-3), ranked against every item of the model's catalogue, the user's earlier items excluded; items
first rated in block 4 are unknown to both models (a miss for both). The catalogue grows with the
movies each block rates, so the update meets new items. The table gives NDCG@10 and HR@10 on block
4, the leave-last-out test NDCG@10 on blocks 1-3, and the wall time of each training (evaluation
included); the target is an update within 25% of the retrain's time and within 5% of its block-4
NDCG@10.

Timestamps are made strictly increasing per user as in bench/ml1m.py. The data's license forbids
redistribution: it is read from ``--data`` and ingested into a temporary workspace.

    python bench/update.py [--seeds 1] [--update-epochs 5] [--max-users N] [--threads 2] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ml1m import DEFAULT_DATA, read_movies, read_ratings  # noqa: E402
from core import schema as S  # noqa: E402

K = 10
NAME = "ml1m"


def blocks(ratings: pd.DataFrame) -> np.ndarray:
    """The block (1-4) of every rating: quartiles of the global time order (ties kept in file order)."""
    order = np.argsort(ratings["ts"].to_numpy(), kind="stable")
    block = np.empty(len(ratings), dtype=np.int64)
    block[order] = np.arange(len(ratings)) * 4 // len(ratings) + 1
    return block


def build(data_dir: Path, workspace: Path, max_users: int | None) -> tuple[pd.DataFrame, Path]:
    """Ingest blocks 1-2 as dataset ``ml1m`` (with the movies they rate) and write block 3 (and the movies it
    rates) for the append; -> block 4's first rating per user, the folder of block 3's files."""
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    ratings, _ = read_ratings(data_dir, max_users)
    ratings = ratings.assign(block=blocks(ratings))
    src = Path(tempfile.mkdtemp(prefix="update-src-"))
    for name, part in (("b12", ratings[ratings["block"] <= 2]), ("b3", ratings[ratings["block"] == 3])):
        part[["user", "item", "rating", "ts"]].to_csv(src / f"{name}.tsv", sep="\t", header=False, index=False)
        read_movies(data_dir, set(part["item"].unique())).to_csv(src / f"{name}-items.csv", index=False)
    ingest(Workspace(workspace), src / "b12.tsv", src / "b12-items.csv", options(name=NAME))
    later = ratings[ratings["block"] == 4].groupby("user", sort=False).head(1)
    return later[["user", "item"]].astype(str).reset_index(drop=True), src


def options(**kw: Any) -> Any:
    from core.ingest.options import IngestOptions

    return IngestOptions(columns=[S.USER_ID, S.ITEM_ID, S.VALUE, S.TIMESTAMP], rating_range=(1, 5), keep_ids=True, **kw)


def append_block3(workspace: Path, src: Path) -> dict[str, Any]:
    """``ingest b3.tsv --items b3-items.csv --append-to ml1m``; -> its wall time and what it added."""
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    started = time.perf_counter()
    report = ingest(Workspace(workspace), src / "b3.tsv", src / "b3-items.csv", options(append_to=NAME))
    return {"seconds": time.perf_counter() - started, **(report.appended or {})}


def block4_metrics(rec: Any, targets: pd.DataFrame) -> dict[str, float]:
    """NDCG@10 and HR@10 of each user's first block-4 rating after their whole history, full ranking."""
    import torch

    from core.data.batches import history_batch
    from core.model.evaluation import exclusion_mask
    from core.model.metrics import rank_of_targets, ranking_metrics

    data, model = rec.data_, rec.model_
    pos = np.searchsorted(data.users, targets["user"].to_numpy())
    known = (pos < len(data.users)) & (data.users[np.minimum(pos, len(data.users) - 1)] == targets["user"].to_numpy())
    ids = data.item_ids[1:]
    where = np.searchsorted(ids, targets["item"].to_numpy())
    in_vocab = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == targets["item"].to_numpy())
    users, items = pos[known], np.where(in_vocab, where + 1, 0)[known]  # 0: not in the model's catalogue
    ranks = [np.full(int((~known).sum()), len(ids) + 1)]  # users unknown to the model: misses
    model.eval()
    with torch.inference_mode():
        for lo in range(0, len(users), 256):
            u, t = users[lo : lo + 256], items[lo : lo + 256]
            ends = data.offsets[u + 1]
            batch = history_batch(data, u, ends, model.cfg.max_len).to(rec.device_)
            task_e, _ = model(batch, last=True)
            exclude = exclusion_mask(data, u, ends)
            exclude[:, 0] = True  # padding; a target outside the catalogue (0) is then a miss
            ranks.append(rank_of_targets(model.engagement_logits(task_e).float().cpu().numpy(), t, exclude))
    out = ranking_metrics(np.concatenate(ranks), K)
    return {"NDCG@10": out["NDCG@10"], "HR@10": out["HR@10"], "users": len(targets)}


def train_and_test(
    ws_root: Path, label: str, settings: dict[str, Any], targets: pd.DataFrame | None, parent: str | None = None
) -> dict[str, Any]:
    """Train one run on ``ml1m`` as it is now (an update of ``parent``, or from scratch) and test it."""
    from core.runs.run import open_run
    from core.runs.train import train_run, update_settings
    from core.store.workspace import Workspace

    ws = Workspace(ws_root)
    started = time.perf_counter()
    if parent is None:
        run_id = train_run(ws, NAME, settings)
    else:
        run_id = train_run(ws, NAME, update_settings(open_run(ws, parent), settings["train"]["epochs"]), parent=parent)
    seconds = time.perf_counter() - started
    run = open_run(ws, run_id)
    rec = run.recommender()
    out = {
        "run": run_id,
        "seconds": seconds,
        "epochs": len(rec.history_),
        "test_NDCG@10": rec.evaluate("test")["NDCG@10"],
        **({} if targets is None else {f"block4_{k}": v for k, v in block4_metrics(rec, targets).items()}),
        **({"users_new": run.config["warm_start"].get("users_new")} if parent else {}),
    }
    print(f"seed {settings['train']['seed']} {label}: {json.dumps(out, default=float)}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--update-epochs", type=int, default=5)
    p.add_argument("--epochs", type=int, help="maximum epochs of the base run and the retrain (default: the default)")
    p.add_argument("--max-users", type=int, help="only the first N users of ratings.dat (a quick run)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--workspace", type=Path)
    args = p.parse_args(argv)
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="update-ws-"))
    src = None
    try:  # the data's license: the temporary files and workspace do not outlive the run
        targets, src = build(args.data, workspace, args.max_users)
        results: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            settings: dict[str, Any] = {"device": args.device, "train": {"seed": seed, "threads": args.threads}}
            if args.epochs is not None:
                settings["train"]["epochs"] = args.epochs
            results.append(
                {"seed": seed, "settings": settings, "base": train_and_test(workspace, "base", settings, None)}
            )
        appended = append_block3(workspace, src)
        print(f"append: {json.dumps(appended, default=float)}", file=sys.stderr, flush=True)
        for r in results:
            update = {**r["settings"], "train": {**r["settings"]["train"], "epochs": args.update_epochs}}
            r["update"] = train_and_test(workspace, "update", update, targets, parent=r["base"]["run"])
            r["retrain"] = train_and_test(workspace, "retrain", r["settings"], targets)
    finally:
        if src is not None:
            shutil.rmtree(src, ignore_errors=True)
        if args.workspace is None:
            shutil.rmtree(workspace, ignore_errors=True)
    print(
        f"ML-1M{'' if args.max_users is None else f' (first {args.max_users} users)'}: 4 time blocks; base on 1-2, "
        f"block 3 appended (ingest --append-to: {appended['events_added']:,} events, {appended['items_added']:,} new "
        f"items, {appended['seconds']:.1f} s), then an update ({args.update_epochs} epochs from the base run) and a "
        f"retrain on 1-3, tested on block 4 ({len(targets):,} users' first block-4 rating, stand-in request time, "
        f"full ranking, earlier items excluded); {len(results)} seed(s), {args.threads} thread(s), "
        f"cores {os.cpu_count()}"
    )
    print("| run | block-4 NDCG@10 | block-4 HR@10 | b123 test NDCG@10 | epochs | wall s |")
    print("|---|---|---|---|---|---|")
    for label in ("update", "retrain"):
        rows = [r[label] for r in results]
        cells = [statistics.median(float(r[k]) for r in rows) for k in ("block4_NDCG@10", "block4_HR@10")]
        test = statistics.median(float(r["test_NDCG@10"]) for r in rows)
        epochs = statistics.median(r["epochs"] for r in rows)
        wall = statistics.median(r["seconds"] for r in rows)
        print(f"| {label} | {cells[0]:.4f} | {cells[1]:.4f} | {test:.4f} | {epochs:.0f} | {wall:.0f} |")
    time_ratio = statistics.median(r["update"]["seconds"] / r["retrain"]["seconds"] for r in results)
    ndcg_ratio = statistics.median(
        r["update"]["block4_NDCG@10"] / r["retrain"]["block4_NDCG@10"] if r["retrain"]["block4_NDCG@10"] else math.nan
        for r in results
    )
    print(f"update / retrain: time {time_ratio:.2f}x (target <= 0.25), block-4 NDCG@10 {ndcg_ratio:.3f}x (>= 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
