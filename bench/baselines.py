"""Baselines for bench/ml100k.py on the same split and protocol: popularity and BPR-MF (torch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from core.data.batches import leave_last_out
from core.data.sequences import SequenceData, build_sequences
from core.model import metrics as M
from core.model.evaluation import exclusion_mask, user_scores


def _setup(events: pd.DataFrame) -> tuple[SequenceData, object, np.ndarray]:
    data = build_sequences(events)
    split = leave_last_out(data)
    known = np.ones(len(data.item), dtype=bool)
    known[split.test_pos] = False  # everything before each test event may be used
    return data, split, known


def _ranking(scores: np.ndarray, data: SequenceData, split: object) -> dict[str, float]:
    targets = data.item[split.test_pos]
    exclude = exclusion_mask(data, split.users, split.test_pos)
    ranks = M.rank_of_targets(scores, targets, exclude)
    return M.ranking_metrics(ranks, 10)


def popularity(events: pd.DataFrame, seed: int) -> dict[str, float]:
    """Rank by interaction count; rate by the item's mean rating (global mean when unseen)."""
    data, split, known = _setup(events)
    counts = np.bincount(data.item[known], minlength=data.n_items + 1).astype(float)
    scores = np.tile(counts, (len(split.users), 1))
    scores[:, 0] = -np.inf
    out = _ranking(scores, data, split)
    vals = data.value[known]
    sums = np.bincount(data.item[known], weights=np.nan_to_num(vals), minlength=data.n_items + 1)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nanmean(vals))
    truth = data.value[split.test_pos]
    pred = means[data.item[split.test_pos]]
    out.update({"RMSE": M.rmse(truth, pred), "MAE": M.mae(truth, pred)})
    return out


def bpr_mf(
    events: pd.DataFrame, seed: int, dim: int = 64, epochs: int = 40, lr: float = 5e-3, reg: float = 1e-4
) -> dict[str, float]:
    """BPR matrix factorization on every event before each user's test event (no rating head)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data, split, known = _setup(events)
    user_of = np.repeat(np.arange(data.n_users), np.diff(data.offsets))
    u_idx, i_idx = user_of[known], data.item[known]
    users = torch.nn.Embedding(data.n_users, dim)
    items = torch.nn.Embedding(data.n_items + 1, dim)
    for emb in (users, items):
        torch.nn.init.normal_(emb.weight, std=0.05)
    opt = torch.optim.Adam(list(users.parameters()) + list(items.parameters()), lr=lr)
    for _ in range(epochs):
        order = rng.permutation(len(u_idx))
        for start in range(0, len(order), 4096):
            sel = order[start : start + 4096]
            u = torch.as_tensor(u_idx[sel])
            pos = torch.as_tensor(i_idx[sel])
            neg = torch.as_tensor(rng.integers(1, data.n_items + 1, len(sel)))
            pu = users(u)
            diff = (pu * items(pos)).sum(-1) - (pu * items(neg)).sum(-1)
            loss = -torch.nn.functional.logsigmoid(diff).mean() + reg * (
                pu.pow(2).sum() + items(pos).pow(2).sum()
            ) / len(sel)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        scores = (users.weight[torch.as_tensor(split.users)] @ items.weight.T).numpy()
    scores[:, 0] = -np.inf
    out = _ranking(scores, data, split)
    out.update({"RMSE": float("nan"), "MAE": float("nan")})
    return out


@torch.inference_mode()
def rating_ranking(rec: object) -> dict[str, float]:
    """Rank every candidate by the model's predicted rating (for the rating-only variant)."""
    data, split, model = rec.data_, rec.split_, rec.model_
    _, states = user_scores(model, data, split.users, split.test_pos, rec.device_)
    n = data.n_items + 1
    scores = np.empty((len(split.users), n), dtype=np.float32)
    all_items = torch.arange(n)
    for r in range(len(split.users)):
        scores[r] = model.rating_of(states[r].expand(n, -1), all_items).float().numpy()
    scores[:, 0] = -np.inf
    out = _ranking(scores, data, split)
    test = rec.evaluate("test")
    out.update({"RMSE": test["RMSE"], "MAE": test["MAE"]})
    return out
