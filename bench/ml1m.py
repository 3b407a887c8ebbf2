"""MovieLens-1M full-ranking benchmark: the Recommender against popularity and BPR-MF on the same split.

Protocol: each user's ratings sorted by timestamp, ties kept in file order (a stable sort of
ratings.dat); last = test, second-to-last = valid, the rest = train; all items that occur in the
ratings (3,706) are scored, the user's earlier items of any behavior excluded; HR@10 and NDCG@10 of the test
event. The model runs ``--seeds`` seeds (0..N-1, or K..K+N-1 with ``--first-seed K``); popularity
and BPR-MF (bench/baselines.py) run once on the same split. Every run is its own subprocess, so its peak RSS is its own.

Ties: about half of ML-1M's ratings share their second with the user's previous rating, and
:func:`core.data.sequences.build_sequences` orders ties by item ID (timestamps in whole seconds,
then item ID, then file row), with no option for file order. So this script gives each user
strictly increasing timestamps in file order before ingesting: after a stable sort,
``t'[k] = max(t[k], t'[k-1] + 1)`` within each user (:func:`strictly_increasing`). That moves 53% of
the events by 1-31 s (median 2 s) and no event by more; the order becomes the file order, which
the core then keeps. Side effect: a same-second gap (gap bucket 1) now reads as 1-31 s (buckets 2-6).
Under the core's item-ID tie-break, 1,580 of the 6,040 test items would be different events.

Request time: the model's label names when a held-out prediction is asked; the repo's default is
the stand-in time (no target timestamp), while the HSTU anchor knows the target timestamp (see
``request_time`` in core/model/config.py, settable with ``--config``).

Catalogue: movies.dat (title + genres as the item text), restricted to movies that occur in the
kept ratings, so that the candidate set is exactly the rated items.

Time budget: ``--time-budget-min`` is checked between training steps through Recommender.fit's
``cancel`` hook, counted from the call to ``fit`` (text encoding included); the best epoch so far
is kept, the epoch under way is dropped, and a cancelled fit skips the rating refit (RMSE only).

The data's license forbids redistribution: it is read from ``--data`` and ingested into a
temporary workspace that is deleted at the end (unless ``--workspace`` is given).

    python bench/ml1m.py [--seeds 3] [--epochs 200] [--time-budget-min 60] [--device auto|cpu|cuda]
        [--config '{"model": {"d_model": 64}}'] [--only model,popularity,bpr-mf] [--max-users N]
        [--data ../shared/data/ml-1m] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import schema as S  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-1m"
NAME = "ml1m"
VARIANTS = ("model", "popularity", "bpr-mf")
METRICS = ("HR@10", "NDCG@10")
DEFAULT_EPOCHS = 200
DEFAULT_BUDGET_MIN = 60.0
NOT_MEASURED = "published, not measured here"
PUBLISHED: tuple[dict[str, Any], ...] = (
    {
        "variant": "SASRec, full cross-entropy (Klenitskiy & Vasilev, RecSys 2023)",
        "HR@10": 0.3152,
        "NDCG@10": 0.1821,
        "note": NOT_MEASURED,
    },
    {
        "variant": "HSTU-large (Zhai et al., ICML 2024)",
        "HR@10": 0.3294,
        "NDCG@10": 0.1893,
        "note": f"{NOT_MEASURED}; target timestamp known",
    },
)


# -- data ------------------------------------------------------------------------------------------
def strictly_increasing(users: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per user (rows grouped by user, in the wanted order): ``t'[k] = max(t[k], t'[k-1] + 1)``.

    With ``k`` the position within the user, ``t'[k] - k`` is the running maximum of ``t[k] - k``.
    """
    pos = pd.Series(users).groupby(users).cumcount().to_numpy()
    running = pd.Series(ts - pos).groupby(users).cummax().to_numpy()
    return np.asarray(running + pos, dtype=np.int64)


def read_ratings(data_dir: Path, max_users: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """ratings.dat per user in (timestamp, file order), timestamps made strictly increasing; and counts."""
    # "::"-separated with no colons inside fields: split on ":" and keep every other column (C parser)
    raw = pd.read_csv(data_dir / "ratings.dat", sep=":", header=None, usecols=[0, 2, 4, 6], dtype=np.int64)
    raw.columns = ["user", "item", "rating", "ts"]
    if max_users is not None:
        raw = raw[raw["user"].isin(pd.unique(raw["user"])[:max_users])]
    users, ts = raw["user"].to_numpy(), raw["ts"].to_numpy()
    order = np.lexsort((np.arange(len(raw)), ts, users))  # stable: file order within equal timestamps
    frame = raw.iloc[order].reset_index(drop=True)
    new_ts = strictly_increasing(frame["user"].to_numpy(), frame["ts"].to_numpy())
    moved = new_ts - frame["ts"].to_numpy()
    last = frame.groupby("user").tail(1).index
    stats = {
        "users": int(frame["user"].nunique()),
        "items": int(frame["item"].nunique()),
        "events": len(frame),
        "events_moved": int((moved > 0).sum()),
        "max_move_s": int(moved.max()) if len(moved) else 0,
        "median_move_s": float(np.median(moved[moved > 0])) if (moved > 0).any() else 0.0,
        "test_events_moved": int((moved[last] > 0).sum()),
    }
    return frame.assign(ts=new_ts), stats


def read_movies(data_dir: Path, keep: set[int]) -> pd.DataFrame:
    """movies.dat (latin-1) as item_id, title, genres ("A, B"), only the movies in ``keep``."""
    rows = []
    for line in (data_dir / "movies.dat").read_text("latin-1").splitlines():
        if line.strip():
            movie, title, genres = line.split("::", 2)
            if int(movie) in keep:
                rows.append((movie, title, genres.replace("|", ", ")))
    return pd.DataFrame(rows, columns=["item_id", "title", "genres"])


def build_dataset(data_dir: Path, workspace: Path, max_users: int | None = None) -> dict[str, Any]:
    """Ingest the prepared ratings (rate events) and the rated movies into a workspace; dataset counts."""
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    ratings, stats = read_ratings(data_dir, max_users)
    tmp = Path(tempfile.mkdtemp(prefix="ml1m-src-"))
    try:  # derived copies of the data live only for the ingest
        ratings[["user", "item", "rating", "ts"]].to_csv(tmp / "ratings.tsv", sep="\t", header=False, index=False)
        read_movies(data_dir, set(ratings["item"].unique())).to_csv(tmp / "items.csv", index=False)
        options = IngestOptions(
            name=NAME, columns=[S.USER_ID, S.ITEM_ID, S.VALUE, S.TIMESTAMP], rating_range=(1, 5), keep_ids=True
        )
        ingest(Workspace(workspace), tmp / "ratings.tsv", tmp / "items.csv", options)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


# -- one run (in a subprocess) ---------------------------------------------------------------------
def _device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu, {torch.get_num_threads()} threads"


def _epoch_line(seed: int) -> Any:
    def progress(event: dict[str, Any]) -> None:
        if event.get("event") == "epoch":
            print(
                f"  [model seed {seed}] epoch {event['epoch']}: {event['seconds']:.1f} s, "
                f"valid NDCG@10 {event.get('valid_NDCG@10', float('nan')):.4f}, best epoch {event.get('best_epoch')}",
                file=sys.stderr,
                flush=True,
            )

    return progress


def run_model(seed: int, workspace: Path, settings: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """Fit the Recommender with ``settings`` (seed set here) under the time budget; test metrics and timings."""
    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    events, items = ws.events(NAME), ws.items(NAME)
    rec = Recommender.from_settings({**settings, "train": {**settings.get("train", {}), "seed": seed}})
    started = time.perf_counter()
    rec.fit(
        events,
        items,
        cache_dir=workspace / "cache" / "embeddings",
        progress=_epoch_line(seed),
        cancel=lambda: time.perf_counter() - started > budget_s,
    )
    fit_seconds = time.perf_counter() - started
    out = dict(rec.evaluate("test"))
    history = rec.history_
    best = rec.best_epoch_ if rec.best_epoch_ and rec.best_epoch_ > 0 else None
    out.update(
        {
            "train_seconds": fit_seconds,
            "epoch_seconds": statistics.median(float(h["seconds"]) for h in history) if history else None,
            "epochs": len(history),
            "best_epoch": best,
            "seconds_to_best": sum(float(h["seconds"]) for h in history[:best]) if best else None,
            "cancelled": bool(rec.cancelled_),
            "n_items": int(rec.data_.n_items),
            "device": _device_name(rec.device_),
        }
    )
    if rec.device_.type == "cuda":
        import torch

        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(rec.device_) / 2**20
    return out


def run_baseline(variant: str, workspace: Path) -> dict[str, Any]:
    """Popularity or BPR-MF (seed 0) on the same events; train_seconds includes their evaluation."""
    from bench.baselines import bpr_mf, popularity
    from core.store.workspace import Workspace

    events = Workspace(workspace).events(NAME)
    started = time.perf_counter()
    out: dict[str, Any] = dict((popularity if variant == "popularity" else bpr_mf)(events, 0))
    out.update({"train_seconds": time.perf_counter() - started, "device": _device_name(None)})
    return out


def _child(variant: str, seed: int, workspace: Path, settings: dict[str, Any], budget_s: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--seed", str(seed), "--workspace", str(workspace)]
    cmd += ["--child-settings", json.dumps(settings), "--child-budget-s", str(budget_s)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, env=env)  # stderr: live progress
    if out.returncode != 0:
        raise SystemExit(f"{variant} seed {seed} failed (exit {out.returncode}); its stderr is above")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- settings --------------------------------------------------------------------------------------
def model_settings(config: dict[str, Any], epochs: int | None, device: str | None) -> dict[str, Any]:
    """The defaults + train epochs 200 + earlier items (any behavior) excluded, then ``--config``, then the flags."""
    if not isinstance(config, dict):
        raise SystemExit("--config must be a JSON object")
    settings: dict[str, Any] = {"exclude_seen": True, **config}
    settings["model"] = dict(config.get("model") or {})
    settings["train"] = {"epochs": DEFAULT_EPOCHS, **(config.get("train") or {})}
    if epochs is not None:
        settings["train"]["epochs"] = epochs
    if device is not None:
        settings["device"] = device
    return settings


# -- report ----------------------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _fmt(values: list[Any], digits: int = 4) -> str:
    vals = [v for v in map(_num, values) if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.0f}" if vals[0].is_integer() and digits <= 1 else f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (*METRICS, "train_seconds", "epoch_seconds", "epochs", "seconds_to_best", "peak_rss_mb")
    out: dict[str, Any] = {"runs": len(results)}
    for key in keys:
        vals = [v for v in (_num(r.get(key)) for r in results) if v is not None]
        if vals:
            out[key] = {"mean": statistics.mean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else None}
    return out


COLUMNS = (
    ("HR@10", "HR@10", 4),
    ("NDCG@10", "NDCG@10", 4),
    ("train s", "train_seconds", 0),
    ("s/epoch", "epoch_seconds", 1),
    ("epochs", "epochs", 1),
    ("peak MB", "peak_rss_mb", 0),
)


def _print_report(
    stats: dict[str, Any], rows: list[tuple[str, list[dict[str, Any]]]], settings: dict[str, Any], budget_min: float
) -> None:
    print(
        f"ML-1M: {stats['users']} users, {stats['items']} items, {stats['events']} ratings; "
        f"{stats['events_moved']} timestamps moved by 1-{stats['max_move_s']} s to keep ties in file order "
        f"({stats['test_events_moved']} test events)"
    )
    for variant, results in rows:
        if variant == "model":
            print(f"model protocol: {results[0].get('label')}")
            if "request_time" in results[0]:
                print(f"model request time: {results[0]['request_time']}")
            print(f"model settings: {json.dumps(settings)}; time budget {budget_min:g} min")
    print("baselines: full ranking over the same items, earlier items excluded, same split (bench/baselines.py)")
    print()
    head = "| variant | runs | " + " | ".join(c[0] for c in COLUMNS) + " | device |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for variant, results in rows:
        if variant == "model" and len(results) > 1:
            for r in results:
                cells = [_fmt([r.get(key)], d) for _, key, d in COLUMNS]
                print(f"| model, seed {r['seed']} | 1 | {' | '.join(cells)} | {r.get('device', '—')} |")
        cells = [_fmt([r.get(key) for r in results], d) for _, key, d in COLUMNS]
        devices = ", ".join(sorted({str(r.get("device", "—")) for r in results}))
        label = f"{variant} (mean ± sd)" if len(results) > 1 else variant
        print(f"| {label} | {len(results)} | {' | '.join(cells)} | {devices} |")
    for pub in PUBLISHED:
        blank = " | ".join("—" for _ in COLUMNS[2:])
        print(f"| {pub['variant']} | — | {pub['HR@10']:.4f} | {pub['NDCG@10']:.4f} | {blank} | {pub['note']} |")
    for variant, results in rows:
        if variant == "model":
            for r in results:
                to_best = _num(r.get("seconds_to_best"))
                if not r.get("epochs"):
                    print(f"model seed {r['seed']}: no epoch finished within the time budget (untrained weights)")
                    continue
                print(
                    f"model seed {r['seed']}: best epoch {r.get('best_epoch')} of {r.get('epochs')} "
                    f"({'stopped by the time budget' if r.get('cancelled') else 'early stopping or epoch limit'}), "
                    f"training time to the best epoch {'—' if to_best is None else f'{to_best:.0f} s'}"
                )


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with ratings.dat and movies.dat")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the model (0..N-1)")
    p.add_argument(
        "--first-seed", type=int, default=0, help="start the seeds here (K..K+N-1), e.g. to spread seeds over processes"
    )
    p.add_argument("--epochs", type=int, help=f"training epochs (default {DEFAULT_EPOCHS}; early stopping applies)")
    p.add_argument("--time-budget-min", type=float, default=DEFAULT_BUDGET_MIN, help="stop training after this")
    p.add_argument("--config", default="{}", help="extra Recommender settings as a JSON object")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="the model's device (default: auto)")
    p.add_argument("--max-users", type=int, help="keep only the first N users (smoke runs)")
    p.add_argument("--only", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--workspace", type=Path, help="workspace folder to use and keep (default: a temporary one)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-settings", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child-budget-s", type=float, default=math.inf, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.child == "model":
            result = run_model(args.seed, args.workspace, json.loads(args.child_settings), args.child_budget_s)
        else:
            result = run_baseline(args.child, args.workspace)
        result["seed"] = args.seed
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result, default=float))
        return 0

    variants = [v for v in args.only.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"--only: unknown variant(s) {unknown}; expected some of {list(VARIANTS)}")
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        p.error(f"--config is not valid JSON: {exc}")
    settings = model_settings(config, args.epochs, args.device)
    if "model" in variants:
        from core.errors import DataError
        from core.model.config import check_settings

        try:
            check_settings(settings)  # bad settings fail before the ingest
        except DataError as exc:
            p.error(f"--config: {exc}")
    budget_s = args.time_budget_min * 60
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: subprocess.run kills the running child, finally cleans up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="ml1m-ws-"))
    try:
        started = time.perf_counter()
        stats = build_dataset(args.data, workspace, args.max_users)
        print(f"ingested in {time.perf_counter() - started:.0f} s: {json.dumps(stats)}", file=sys.stderr, flush=True)
        rows = []
        for variant in variants:
            seeds = range(args.first_seed, args.first_seed + args.seeds) if variant == "model" else [0]
            results = [_child(variant, s, workspace, settings, budget_s) for s in seeds]
            rows.append((variant, results))
            print(f"done {variant}: " + json.dumps(results[-1], default=float), file=sys.stderr, flush=True)
    finally:
        if args.workspace is None:
            shutil.rmtree(workspace, ignore_errors=True)
    _print_report(stats, rows, settings, args.time_budget_min)
    if args.json:
        report = {
            "dataset": stats,
            "settings": settings,
            "time_budget_min": args.time_budget_min,
            "results": dict(rows),
            "summary": {variant: _summary(results) for variant, results in rows},
            "published": list(PUBLISHED),
        }
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
