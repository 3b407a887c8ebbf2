"""Training steps and full-ranking evaluation on a generated log, without a whole epoch: quick figures at scale.

    python bench/scale_step.py [--size 1m|10m] [--steps 60] [--eval-users 10000] [--seed 0]

The log is ``bench/scale.py``'s funnel (same generator, same seed). The default model (loss ``auto``: the sampled
softmax above 50,000 items) trains in this process on two threads, as ``train`` does, and stops after ``--steps``
steps. Printed: the median and mean step time over the steps after the first five, the projected training time of
one epoch (mean step x steps per epoch) and training events/s (the log's events over that time; validation not
included); the size of the model's state (what its file holds) and of its item text table; then the evaluation of
``--eval-users`` users' validation events over the whole catalogue (full ranking, ``score_events``, the model as
trained so far); the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import SIZES, generate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1m", choices=sorted(SIZES))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval-users", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from core.model.epochs import training_users
    from core.model.evaluation import score_events
    from core.model.recommender import Recommender

    started = time.perf_counter()
    log = generate(*SIZES[args.size], args.seed)
    log["timestamp"] = pd.to_datetime(log["timestamp"], unit="s")
    log["user_id"], log["item_id"] = log["user_id"].astype(str), log["item_id"].astype(str)
    print(f"[{args.size}] generated {len(log):,} events in {time.perf_counter() - started:.1f} s", flush=True)
    marks: list[float] = []

    def progress(event: dict) -> None:
        if event["event"] == "step":
            marks.append(time.perf_counter())

    rec = Recommender(device="cpu", train={"epochs": 1, "rating_refit_epochs": 0})
    started = time.perf_counter()
    rec.fit(log, progress=progress, cancel=lambda: len(marks) >= args.steps)
    steps = np.diff(marks[5:])
    per_epoch = -(-len(training_users(rec.data_, rec.split_)) // 32)  # batches of 32 of the users who train
    epoch = float(np.mean(steps)) * per_epoch
    print(
        f"[{args.size}] {rec.data_.n_users:,} users, {rec.data_.n_items:,} items, loss {rec.loss_fn_.loss}, "
        f"{torch.get_num_threads()} threads; setup and {len(marks)} steps in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    print(
        f"[{args.size}] step: median {np.median(steps):.3f} s, mean {np.mean(steps):.3f} s over {len(steps)}; "
        f"one epoch ({per_epoch:,} steps) about {epoch:.0f} s of training: {len(log) / epoch:,.0f} events/s",
        flush=True,
    )
    fitted = rec.fitted()
    state = fitted.model.state_dict()
    size = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    text = sum(state[k].numel() * state[k].element_size() for k in ("items.text", "items.text_of")) / 2**20
    print(
        f"[{args.size}] model state (what the model file holds): {size:,.1f} MB, of which the item text table "
        f"{text:,.1f} MB ({state['items.text'].shape[0]:,} distinct vectors for {fitted.data.n_items:,} items)",
        flush=True,
    )
    n = min(args.eval_users, len(fitted.split.users))
    users, pos = fitted.split.users[:n], fitted.split.valid_pos[:n]
    started = time.perf_counter()
    metrics = score_events(fitted, users, pos, pos)
    seconds = time.perf_counter() - started
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"[{args.size}] evaluation, {n:,} users x {fitted.data.n_items:,} items (full ranking): {seconds:.1f} s "
        f"(NDCG@10 {metrics['NDCG@10']:.4f}); peak RSS {mb:,.0f} MB",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
