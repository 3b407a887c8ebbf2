"""Scale benchmark: synthetic logs of 1M and 10M events, ingested, trained, evaluated and explained.

    python bench/scale.py [--sizes 1m,10m] [--processes 1,2] [--epochs 1] [--loo-users 1000] [--seed 0]
        [--item-text] [--workspace DIR]

Data: a funnel log generated with numpy (the sample generator's funnel, scaled up; seeded): users of
log-normal activity start sessions over eight weeks; a session views one item (from the user's two favourite
categories with probability 0.6, else by Zipf popularity), then clicks, carts, purchases and rates it with the
sample generator's step probabilities (``core.data.synth.SynthConfig``), a minute apart. Sizes: ``1m`` = 1M
events, 100K items, 10K users; ``10m`` = 10M events, 1M items, 100K users. Without ``--item-text`` the items have
no text (the encoder reads one empty text); with it each item has a short title, whose encoding falls in the
training command's time (not in its epochs).

Printed for each size: generation time; ingest rows/s; sequence building (the events read from the workspace and
indexed, as a fit does); then for each process count (``train --nproc-per-node N``, default loss ``auto``): the
epoch time, seconds per 1M events, training events/s per process, the peak RSS of the whole process tree; the
evaluation of every user over the whole catalogue (``evaluate``, wall time with the run's loading); global
influence by leave-one-out for ``--loo-users`` users (``influence --method loo --no-ablation``). Every step is a
subprocess of the ``behaviorlens`` command, its peak RSS sampled over its process tree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZES = {"1m": (1_000_000, 100_000, 10_000), "10m": (10_000_000, 1_000_000, 100_000)}  # events, items, users
NAME = "scale"
WEEK = 7 * 86_400


def generate(events: int, items: int, users: int, seed: int) -> pd.DataFrame:
    """A funnel log of about ``events`` events (user_id, item_id, behavior, value, timestamp)."""
    from core.data.synth import SynthConfig

    cfg, rng = SynthConfig(), np.random.default_rng(seed)
    per_session = 1 + cfg.p_click * (1 + cfg.p_cart * (1 + cfg.p_purchase * (1 + cfg.p_rate)))
    sessions = int(events / per_session)
    activity = rng.lognormal(0.0, cfg.activity_sigma, users)
    user = rng.choice(users, size=sessions, p=activity / activity.sum())
    n_cat = max(1, items // 100)
    category = rng.integers(0, n_cat, items)  # item -> category
    favourite = rng.integers(0, n_cat, (users, 2))
    by_cat = pd.Series(np.arange(items)).groupby(category).apply(np.asarray).to_dict()
    popular = (rng.zipf(1.3, sessions) - 1) % items
    own = rng.random(sessions) < 0.6
    picked_cat = favourite[user, rng.integers(0, 2, sessions)]
    item = popular.copy()
    for c in np.unique(picked_cat[own]):  # an item of the user's favourite category
        rows = np.flatnonzero(own & (picked_cat == c))
        pool = by_cat.get(int(c), np.arange(items))
        item[rows] = pool[rng.integers(0, len(pool), len(rows))]
    start = rng.integers(0, 8 * WEEK, sessions) + 1_700_000_000
    steps = [("view", np.ones(sessions, bool))]
    for name, p in (("click", cfg.p_click), ("cart", cfg.p_cart), ("purchase", cfg.p_purchase), ("rate", cfg.p_rate)):
        steps.append((name, steps[-1][1] & (rng.random(sessions) < p)))
    parts = []
    for k, (name, mask) in enumerate(steps):
        rows = np.flatnonzero(mask)
        value = rng.integers(1, 6, len(rows)).astype(float) if name == "rate" else np.full(len(rows), np.nan)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": user[rows],
                    "item_id": item[rows],
                    "behavior": name,
                    "value": value,
                    "timestamp": start[rows] + 60 * k,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


class Peak:
    """The peak RSS (MB) of a process and its children, sampled every 0.2 s while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                self.mb = max(self.mb, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
            except psutil.Error:  # the process ended between two samples
                pass
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.mb


def command(ws: Path, *args: str) -> tuple[dict[str, Any] | None, float, float]:
    """Run ``behaviorlens ARGS --workspace WS``; (its JSON output, wall seconds, peak RSS MB of its tree)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", *args, "--workspace", str(ws)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = Peak(proc.pid)
    out, err = proc.communicate()
    mb, seconds = peak.stop(), time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"behaviorlens {' '.join(args)} failed ({proc.returncode}): {err[-2000:]}")
    return (json.loads(out) if out.strip().startswith("{") else None), seconds, mb


def run_size(size: str, args: argparse.Namespace, root: Path) -> None:
    n_events, n_items, n_users = SIZES[size]
    ws = root / f"ws-{size}"
    started = time.perf_counter()
    log = generate(n_events, n_items, n_users, args.seed)
    folder = root / f"data-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    log.to_parquet(folder / "events.parquet", index=False)
    extra: list[str] = []
    if args.item_text:
        ids = np.unique(log["item_id"])
        pd.DataFrame({"item_id": ids, "title": [f"item {i} of category {i % 997}" for i in ids]}).to_parquet(
            folder / "items.parquet", index=False
        )
        extra = ["--items", str(folder / "items.parquet")]
    n_items = int(log["item_id"].nunique())  # the items that occur
    print(
        f"[{size}] generated {len(log):,} events, {n_items:,} items, "
        f"{log['user_id'].nunique():,} users in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    del log
    ingest = ("ingest", str(folder / "events.parquet"), *extra, "--name", NAME, "--keep-ids", "--json")
    out, seconds, mb = command(ws, *ingest)
    rows = out["rows_accepted"] if out else n_events
    print(f"[{size}] ingest: {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s), peak RSS {mb:,.0f} MB")
    build = subprocess.run(
        [sys.executable, "-c", _BUILD, str(ws)], cwd=REPO, capture_output=True, text=True, check=True
    )
    print(f"[{size}] sequence building: {build.stdout.strip()}", flush=True)
    config = root / "settings.json"
    config.write_text(json.dumps({"device": "cpu", "train": {"epochs": args.epochs, "rating_refit_epochs": 0}}))
    for n in args.processes:
        out, seconds, mb = command(
            ws, "train", "--dataset", NAME, "--config", str(config), "--nproc-per-node", str(n), "--json", "--quiet"
        )
        run = out["run"]
        history = json.loads((ws / "runs" / run / "config.json").read_text())["history"]
        epoch = float(np.median([h["seconds"] for h in history]))
        per_1m = epoch / (rows / 1e6)
        print(
            f"[{size}] train, {n} process(es): epoch {epoch:.1f} s (with validation), {per_1m:.1f} s per 1M events, "
            f"{rows / epoch / n:,.0f} events/s per process; whole command {seconds:.0f} s; peak RSS {mb:,.0f} MB",
            flush=True,
        )
        _, seconds, mb = command(ws, "evaluate", "--run", run, "--json")
        print(
            f"[{size}] evaluate (test and validation, every user, all {n_items:,} items, with the bars): "
            f"{seconds:.1f} s (with loading), {mb:,.0f} MB"
        )
        _, seconds, mb = command(
            ws,
            "influence",
            "--run",
            run,
            "--users",
            str(args.loo_users),
            "--method",
            "loo",
            "--no-ablation",
            "--nproc-per-node",
            str(n),
            "--json",
        )
        print(
            f"[{size}] influence, leave-one-out, {args.loo_users} users, {n} process(es): {seconds:.1f} s, {mb:,.0f} MB"
        )


_BUILD = """
import sys, time, resource
from pathlib import Path
from core.store.workspace import Workspace
from core.data.sequences import build_sequences
t = time.perf_counter(); events = Workspace(Path(sys.argv[1])).events("scale"); read = time.perf_counter() - t
t = time.perf_counter(); data = build_sequences(events); built = time.perf_counter() - t
mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"read {len(events):,} events in {read:.1f} s, indexed {data.n_users:,} users in {built:.1f} s; "
      f"peak RSS {mb:,.0f} MB")
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1m,10m", help=f"comma-separated, of: {', '.join(SIZES)}")
    p.add_argument("--processes", default="1,2", help="training process counts, comma-separated")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--loo-users", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--item-text", action="store_true", help="give the items titles (their encoding is timed)")
    p.add_argument("--workspace", type=Path, help="keep the workspaces and data here (default: a temporary folder)")
    args = p.parse_args(argv)
    args.processes = [int(n) for n in args.processes.split(",") if n]
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {unknown}: expected some of {', '.join(SIZES)}")
    root = args.workspace or Path(tempfile.mkdtemp(prefix="scale-"))
    try:
        for size in sizes:
            run_size(size, args, root)
    finally:
        if args.workspace is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
