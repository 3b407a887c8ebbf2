"""What one training step costs with the full softmax against the sampled softmax, by catalogue size.

A synthetic batch (``--users`` histories of ``--length`` events over N items) goes through the default
model's forward and backward with each engagement loss; the script prints the median step time of each
and their ratio for every N. ``train.loss = "auto"`` switches to the sampled softmax above the size where
the full softmax's step costs about twice the sampled one's (core.model.config.AUTO_SAMPLED_ABOVE).

    python bench/loss_step.py [--items 3706,10000,50000,200000] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import schema as S
from core.data.batches import leave_last_out, training_batch
from core.data.sequences import build_sequences
from core.model.config import AUTO_SAMPLED_ABOVE, ModelConfig, TrainConfig
from core.model.losses import MultiTaskLoss, training_counts
from core.model.network import BehaviorModel
from core.model.training import make_optimizer


def step_times(n_items: int, users: int, length: int, steps: int, loss: str, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    item = rng.zipf(1.3, users * length) % n_items  # a long-tailed catalogue
    frame = pd.DataFrame(
        {
            S.USER_ID: np.repeat([f"u{u}" for u in range(users)], length),
            S.ITEM_ID: [f"i{i}" for i in item],
            S.TIMESTAMP: pd.to_datetime(np.tile(np.arange(length) * 60, users) + 1_700_000_000, unit="s"),
            S.BEHAVIOR: "view",
        }
    )
    data = build_sequences(frame, item_ids=[f"i{i}" for i in range(n_items)])
    split = leave_last_out(data)
    batch = training_batch(data, np.arange(users), split.train_end, max_len=length)
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=n_items, n_behaviors=len(data.behaviors), text_dim=384, max_len=length)
    model = BehaviorModel(cfg, torch.randn(n_items + 1, 384)).train()
    train = TrainConfig(loss=loss)
    loss_fn = MultiTaskLoss(train, n_items)
    loss_fn.set_popularity(training_counts(data, split))
    opt = make_optimizer(model, loss_fn, train)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        parts = loss_fn(model, batch, None)
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        opt.step()
        times.append(time.perf_counter() - started)
    return times[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", default="3706,10000,50000,200000")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"one training step (forward + backward + AdamW), batch of {args.users} users x {args.length} events, "
        f"default model; median of {args.steps} steps, {args.threads} thread(s), cores {os.cpu_count()}; "
        f"auto switches above {AUTO_SAMPLED_ABOVE:,} items"
    )
    print("| items | full softmax s/step | sampled softmax s/step | full / sampled |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.items.split(",")):
        full = statistics.median(step_times(n, args.users, args.length, args.steps, "softmax"))
        sampled = statistics.median(step_times(n, args.users, args.length, args.steps, "sampled_softmax"))
        print(f"| {n:,} | {full:.3f} | {sampled:.3f} | {full / sampled:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
