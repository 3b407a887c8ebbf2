"""Fusion benchmark: time per weight change (re-rank every user, recompute every metric), on this CPU.

Two cases, each in its own subprocess so that its peak memory is its own:

- ``ml100k``: a trained run on MovieLens-100K (built with bench/ml100k.py's
  ``build_dataset``; trained for ``--epochs`` epochs unless ``--run`` names one: the
  timing does not depend on model quality). Its catalogue (1,682 items) is below
  ``FULL_ITEMS``, so every eligible item is a candidate and the metrics are exact.
  The same run also times recomputing the head outputs with the model (forward pass
  over every test user plus the rating head over every item), i.e. what a weight
  change would cost without the cache, and prints the ratio; then the "done when"
  check: engagement=1 vs rating=1 metrics and top-10 lists.
- ``large``: 50,000 users × 20,000 items of synthetic cached head outputs (a low-rank
  latent model: softmax engagement, correlated ratings, Zipf popularity, freshness
  tied to popularity; no model). The model recompute is estimated by timing a
  random-initialized model of the same size on a sample of users.

Candidate pre-selection (core/fusion/candidates.py): a [50,000 × 20,000] table would be 10^9
cells, so each user keeps, as a padded [U, M] index array, the union of their top
``per_anchor`` eligible items under each of 11 anchor weightings of the simplex (each
signal alone, the 6 edge midpoints, the centroid) plus the held-out target. One signal
alone would miss items that are good on two signals at once; the anchors cover the
mixtures in between. A weight change is then a weighted sum over [U, M], a partial sort
for the top-10 and a comparison for the target's rank, in blocks of users (bounded
memory). Any item left out scores at most Σ_a λ_a · outside_a for any way of writing the
weights as a mixture λ of anchors (outside_a: the best anchor-a score left out, stored
per user), so a user whose 10th-best candidate beats that bound has provably the exact
top-10; the bench reports that share, and on a sample of users compares with the exact
top-10 over the whole catalogue.

    python bench/fusion.py [--only ml100k,large] [--run RUN --workspace DIR] [--epochs 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.fusion import candidates as FC  # noqa: E402
from core.fusion import formula as F  # noqa: E402
from core.fusion import ranking as R  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-100k"
CASES = ("ml100k", "large")


def weight_settings(n: int, seed: int = 0) -> list[dict[str, float]]:
    """The four one-signal settings, then random points of the simplex (a slider session)."""
    rng = np.random.default_rng(seed)
    out = [{s: float(s == t) for s in F.SIGNALS} for t in F.SIGNALS]
    out += [dict(zip(F.SIGNALS, map(float, rng.dirichlet(np.ones(4))))) for _ in range(max(0, n - 4))]
    return out


def time_changes(c: R.Candidates, settings: list[dict[str, float]]) -> dict[str, float]:
    """Median and p90 seconds of one weight change (fused_metrics) and its transient memory."""
    R.fused_metrics(c, settings[-1])  # warm-up
    times = []
    for w in settings:
        t = time.perf_counter()
        R.fused_metrics(c, w)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    R.fused_metrics(c, settings[-1])
    transient = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "change_ms_median": 1000 * statistics.median(times),
        "change_ms_p90": 1000 * float(np.quantile(times, 0.9)),
        "changes": len(times),
        "change_transient_mb": transient / 2**20,
        "cache_mb": sum(a.nbytes for a in vars(c).values()) / 2**20,
    }


# -- ML-100K ---------------------------------------------------------------------------------
def train(workspace: Path, data: Path, epochs: int) -> dict[str, Any]:
    from bench.ml100k import build_dataset
    from core.runs.train import train_run
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    if "ml100k" not in ws.dataset_names():
        build_dataset(data, workspace)
    started = time.perf_counter()
    run_id = train_run(ws, "ml100k", {"device": "cpu", "train": {"epochs": epochs}})
    return {"run": run_id, "train_s": time.perf_counter() - started}


def ml100k(workspace: Path, run_id: str, repeats: int) -> dict[str, Any]:
    from core.runs import fusion as FR
    from core.runs.run import open_run
    from core.runs.scores import evaluate_run
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    rec = open_run(ws, run_id, "cpu").recommender()
    proto = rec.protocol_
    model_times = []
    for _ in range(2):
        t = time.perf_counter()
        FC.build_candidates(rec, "test", proto.exclude_seen, proto.target_behavior)
        model_times.append(time.perf_counter() - t)
    FR.run_candidates(open_run(ws, run_id), "test")  # stored in the run (built once)
    t = time.perf_counter()
    c, _ = FR.run_candidates(open_run(ws, run_id), "test")
    out: dict[str, Any] = {
        "users": len(c.users),
        "items": c.n_items,
        "candidates": c.items.shape[1],
        "cache_load_s": time.perf_counter() - t,
        "model_s": min(model_times),
        **time_changes(c, weight_settings(repeats)),
    }
    t = time.perf_counter()
    for w in F.weight_grid(0.25):
        R.fused_metrics(c, w)
    out["sweep_s"], out["sweep_points"] = time.perf_counter() - t, len(F.weight_grid(0.25))
    out["exact_users"] = R.fused_metrics(c, {"engagement": 0.5, "rating": 0.5})["exact_users"]
    out.update(done_when(ws, run_id, rec, evaluate_run(open_run(ws, run_id))))
    return out


def done_when(ws: Any, run_id: str, rec: Any, plain: dict[str, Any]) -> dict[str, Any]:
    """engagement=1 vs rating=1: metrics (and engagement=1 against evaluate) and one user's top-10s."""
    from core.runs.fusion import evaluate_fused, recommend_fused
    from core.runs.run import open_run

    keys = ("HR@10", "NDCG@10", "MRR@10", "coverage@10", "mean_popularity@10")
    e = evaluate_fused(open_run(ws, run_id), {"engagement": 1, "rating": 0})
    r = evaluate_fused(open_run(ws, run_id), {"engagement": 0, "rating": 1})
    user = str(rec.data_.users[0])
    lists = {
        name: recommend_fused(open_run(ws, run_id), user, 10, w)["item_id"].tolist()
        for name, w in (("engagement", {"engagement": 1}), ("rating", {"rating": 1}))
    }
    return {
        "evaluate_engagement": {k: e["test"][k] for k in keys},
        "evaluate_rating": {k: r["test"][k] for k in keys},
        "evaluate_plain": {k: plain["test"][k] for k in keys[:3]},
        "engagement_matches_evaluate": all(e["test"][k] == plain["test"][k] for k in keys[:3]),
        "user": user,
        "top10_engagement": lists["engagement"],
        "top10_rating": lists["rating"],
    }


# -- the large synthetic case ------------------------------------------------------------------
def synthetic_items(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, ...]:
    """Item factors [N+1, d], logit bias, popularity and freshness signals, counts (index 0 = padding)."""
    counts = np.zeros(n + 1)
    counts[1:] = rng.permutation(np.floor(20_000 / np.arange(1, n + 1) ** 0.9))
    factors = rng.normal(0, 1 / np.sqrt(dim), (n + 1, dim))
    bias = 0.5 * np.log1p(counts)
    age = rng.exponential(30 * 86_400 / np.log(counts + 2))  # popular items were seen more recently
    last = np.where(counts > 0, 1.7e9 - age, np.nan)
    return factors, bias, F.popularity_signal(counts), F.freshness_signal(last), counts.astype(np.float32)


def synthetic_block(
    rng: np.random.Generator, b: int, factors: np.ndarray, bias: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log-probabilities, raw ratings, eligible, targets) of ``b`` synthetic users over every item."""
    n1 = len(factors)
    z = rng.normal(0, 1, (b, factors.shape[1])) @ factors.T * 3.0  # [B, N+1]
    logits = z + bias
    logits[:, 0] = -np.inf
    top = logits.max(1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
    eligible = np.ones((b, n1), bool)
    eligible[:, 0] = False
    cdf = np.cumsum(counts) / counts.sum()
    seen = np.minimum(np.searchsorted(cdf, rng.random((b, 80))), n1 - 1)  # up to 80 seen items, by popularity
    seen[np.arange(80)[None, :] >= rng.integers(20, 80, (b, 1))] = 0
    eligible[np.arange(b)[:, None], seen] = False
    eligible[:, 0] = False
    p = np.where(eligible, np.exp(logp), 0.0).cumsum(1)  # target: drawn from the engagement distribution
    targets = np.minimum((p < rng.random((b, 1)) * p[:, -1:]).sum(1), n1 - 1)
    ratings = np.clip(3.6 + 0.5 * z / z.std() + rng.normal(0, 0.4, z.shape), 1, 5).astype(np.float32)
    return logp.astype(np.float32), ratings, eligible, targets


def large(users: int, items: int, per_anchor: int, repeats: int, sample: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    factors, bias, pop, fresh, counts = synthetic_items(rng, items, 16)
    blocks, kept = [], None
    t = time.perf_counter()
    for lo in range(0, users, 256):
        b = min(256, users - lo)
        logp, raw, eligible, targets = synthetic_block(rng, b, factors, bias, counts)
        eng, rat = F.minmax_probability(logp, eligible), F.rating_signal(raw, (1.0, 5.0))
        blocks.append(FC.select_block(eng, rat, pop, fresh, eligible, targets, per_anchor))
        blocks[-1]["targets"] = targets
        if kept is None:
            kept = (eng[:sample], rat[:sample], eligible[:sample], targets[:sample])
    out = FC.stack_blocks(blocks)
    c = R.Candidates(
        users=np.arange(users),
        items=out["items"],
        engagement=out["engagement"],
        rating=out["rating"],
        popularity=pop,
        freshness=fresh,
        popularity_count=counts,
        outside=out["outside"],
        targets=out["targets"],
        target_col=FC.target_columns(out["items"], out["targets"]),
        target_rating=np.full(users, np.nan, np.float32),
        target_value=np.full(users, np.nan, np.float32),
    )
    result: dict[str, Any] = {
        "users": users,
        "items": items,
        "per_anchor": per_anchor,
        "candidates": c.items.shape[1],
        "build_s": time.perf_counter() - t,
    }
    settings = weight_settings(repeats)
    result.update(time_changes(c, settings))
    result.update(accuracy(c, kept, pop, fresh, settings))
    result["rss_mb"] = current_rss_mb()
    return result


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def accuracy(
    c: R.Candidates, kept: tuple[np.ndarray, ...], pop: np.ndarray, fresh: np.ndarray, settings: list[dict[str, float]]
) -> dict[str, Any]:
    """Pre-selected vs exact top-10 over the whole catalogue, on the first users; certified share on all."""
    eng, rat, eligible, targets = kept
    n = len(targets)
    full = FC.stack_blocks([FC.select_block(eng, rat, pop, fresh, eligible, targets, None)])
    exact = R.Candidates(
        users=np.arange(n),
        items=full["items"],
        engagement=full["engagement"],
        rating=full["rating"],
        popularity=pop,
        freshness=fresh,
        popularity_count=c.popularity_count,
        outside=full["outside"],
        targets=targets,
        target_col=FC.target_columns(full["items"], targets),
        target_rating=c.target_rating[:n],
        target_value=c.target_value[:n],
    )
    sub = R.rows_of(c, slice(0, n))
    same, recall, certified, hr_gap = [], [], [], []
    for w in settings:
        a, b = R.rerank(exact, w, 10), R.rerank(sub, w, 10)
        same.append(float((a.items == b.items).all(1).mean()))
        recall.append(float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.items, b.items)])))
        certified.append(R.fused_metrics(c, w)["exact_users"])
        hr_gap.append(abs(R.fused_metrics(exact, w)["HR@10"] - R.fused_metrics(sub, w)["HR@10"]))
    return {
        "sample_users": n,
        "same_top10_min": min(same),
        "same_top10_mean": statistics.mean(same),
        "recall10_min": min(recall),
        "certified_mean": statistics.mean(certified),
        "certified_min": min(certified),
        "hr10_gap_max": max(hr_gap),
    }


def model_estimate(items: int, users: int, sample: int = 64, history: int = 50) -> dict[str, Any]:
    """Seconds of the model's head outputs over every item for ``sample`` users, scaled to ``users``."""
    import torch

    from core.data.sequences import SequenceData
    from core.model.config import ModelConfig
    from core.model.evaluation import user_scores
    from core.model.network import BehaviorModel
    from core.model.protocol import RatingScale

    rng = np.random.default_rng(1)
    model = BehaviorModel(ModelConfig(n_items=items, n_behaviors=2, text_dim=384), torch.zeros(items + 1, 384)).eval()
    total = sample * history
    data = SequenceData(
        users=np.array([f"u{i:05d}" for i in range(sample)]),
        item_ids=np.array([""] + [f"i{i}" for i in range(items)], dtype=object),
        behaviors=["", "view"],
        offsets=np.arange(0, total + 1, history, dtype=np.int64),
        item=rng.integers(1, items + 1, total),
        behavior=np.ones(total, np.int64),
        value=np.full(total, np.nan, np.float32),
        ts=np.arange(total, dtype=np.int64) * 60,
    )

    def heads(users: np.ndarray) -> None:
        _, states = user_scores(model, data, users, data.offsets[1:][users], torch.device("cpu"))
        FC.all_ratings(model, states, RatingScale())

    heads(np.arange(4))  # warm-up: first-call kernel set-up is not part of the cost per user
    t = time.perf_counter()
    heads(np.arange(sample))
    seconds = time.perf_counter() - t
    return {"model_sample_users": sample, "model_sample_s": seconds, "model_s": seconds * users / sample}


# -- driver ------------------------------------------------------------------------------------
def _child(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if out.returncode != 0:
        raise SystemExit(f"{argv[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, r: dict[str, Any]) -> None:
    ratio = r["model_s"] * 1000 / r["change_ms_median"]
    print(f"\n== {name}: {r['users']:,} users × {r['items']:,} items, candidates per user M = {r['candidates']:,}")
    print(
        f"weight change (re-rank every user + every metric): median {r['change_ms_median']:.1f} ms, "
        f"p90 {r['change_ms_p90']:.1f} ms over {r['changes']} settings"
    )
    model = "measured" if name == "ml100k" else f"estimated from {r['model_sample_users']} users"
    print(f"recompute with the model ({model}): {r['model_s']:.2f} s  ->  cache is {ratio:,.0f}× faster")
    print(
        f"memory: cached arrays {r['cache_mb']:.0f} MB, per-change temporaries {r['change_transient_mb']:.0f} MB, "
        f"peak RSS of the case {r['peak_rss_mb']:.0f} MB"
        + (f" (building included), RSS while re-ranking {r['rss_mb']:.0f} MB" if "rss_mb" in r else "")
    )
    if name == "ml100k":
        print(
            f"cache load {r['cache_load_s']:.2f} s; sweep of {r['sweep_points']} weight points {r['sweep_s']:.2f} s; "
            f"exact users {r['exact_users']:.0%} (every item is a candidate)"
        )
        print(f"engagement=1: {r['evaluate_engagement']}\nrating=1:     {r['evaluate_rating']}")
        print(
            f"engagement=1 equals evaluate's HR/NDCG/MRR@10 exactly: {r['engagement_matches_evaluate']} "
            f"({r['evaluate_plain']})"
        )
        print(
            f"user {r['user']} top-10 by engagement: {r['top10_engagement']}\n"
            f"{' ' * len('user ' + r['user'])} top-10 by rating:     {r['top10_rating']}"
        )
    else:
        print(
            f"pre-selection: union of each user's top-{r['per_anchor']} under 11 anchor weightings (4 signals, "
            f"6 edge midpoints, centroid) + the target; built in {r['build_s']:.0f} s"
        )
        print(
            f"provably exact top-10 for {r['certified_mean']:.1%} of users on average over the settings "
            f"(min {r['certified_min']:.1%}; ties at the cut are not certified)"
        )
        print(
            f"on {r['sample_users']} users vs the whole catalogue: identical top-10 for {r['same_top10_mean']:.1%} "
            f"(min {r['same_top10_min']:.1%}), recall@10 ≥ {r['recall10_min']:.3f}, "
            f"HR@10 gap ≤ {r['hr10_gap_max']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(CASES))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workspace", type=Path, help="workspace with (or for) the ml100k dataset")
    p.add_argument("--run", help="an existing ml100k run in --workspace (default: train one)")
    p.add_argument("--epochs", type=int, default=2, help="epochs when training the ml100k run")
    p.add_argument("--repeats", type=int, default=20, help="weight settings timed per case")
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--per-anchor", type=int, default=FC.PER_ANCHOR)
    p.add_argument("--sample", type=int, default=256, help="users compared with the exact top-10 (large case)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.child == "train":
            result = train(args.workspace, args.data, args.epochs)
        elif args.child == "ml100k":
            result = ml100k(args.workspace, args.run, args.repeats)
        elif args.child == "model":
            result = model_estimate(args.items, args.users)
        else:
            result = large(args.users, args.items, args.per_anchor, args.repeats, args.sample)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result, default=float))
        return 0
    print(f"cpu cores {os.cpu_count()}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    only = [c for c in args.only.split(",") if c]
    if "ml100k" in only:
        workspace = args.workspace or Path(tempfile.mkdtemp(prefix="fusion-ws-"))
        run_id = args.run
        if run_id is None:
            trained = _child(
                [
                    "--child",
                    "train",
                    "--workspace",
                    str(workspace),
                    "--data",
                    str(args.data),
                    "--epochs",
                    str(args.epochs),
                ]
            )
            run_id = trained["run"]
            print(f"trained ml100k run {run_id} ({args.epochs} epochs) in {trained['train_s']:.0f} s")
        report(
            "ml100k",
            _child(
                ["--child", "ml100k", "--workspace", str(workspace), "--run", run_id, "--repeats", str(args.repeats)]
            ),
        )
    if "large" in only:
        size = ["--users", str(args.users), "--items", str(args.items)]
        result = _child(
            [
                "--child",
                "large",
                *size,
                "--per-anchor",
                str(args.per_anchor),
                "--repeats",
                str(args.repeats),
                "--sample",
                str(args.sample),
            ]
        )
        model = _child(["--child", "model", *size])
        report(
            "large",
            {**result, **model, "model_peak_rss_mb": model["peak_rss_mb"], "peak_rss_mb": result["peak_rss_mb"]},
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
