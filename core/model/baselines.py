"""The bars a trained model must clear, scored on its own split and protocol: popularity and recent items.

- ``popularity``: items ranked by how often they occur in the events a prediction may use
  (every user's events before their held-out event of that split: the training part for
  validation, training + validation for test).
- ``recent_items``: the user's most recent distinct items, newest first, then the popular ones;
  no training. Where earlier items stay candidates (repeat-heavy logs) this is the bar: the
  next event often continues what the user just did. Under a protocol that excludes earlier
  items it is the popularity baseline, so it is not reported there (None).

Both see exactly what the model sees: the history before the held-out event, in the protocol's
order (timestamp, then item ID), and the same candidate set (earlier items of any behavior excluded or kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.data.batches import Split
from core.data.sequences import SequenceData
from core.model import metrics as M
from core.model.evaluation import K, exclusion_mask
from core.model.protocol import Protocol

BASELINES = ("popularity", "recent_items")
_BLOCK_CELLS = 1 << 22  # [users, items] cells scored at once


def popularity_counts(data: SequenceData, users: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[N+1] event counts per item over the given users' events before ``ends`` (index 0 = padding, 0)."""
    keep = np.zeros(len(data.item), dtype=bool)
    for u, e in zip(users, ends):
        keep[int(data.offsets[u]) : int(e)] = True
    return np.bincount(data.item[keep], minlength=data.n_items + 1).astype(np.float64)


def recent_distinct(data: SequenceData, user: int, end: int) -> np.ndarray:
    """The user's distinct items before ``end``, most recent first (ties in the protocol's order)."""
    items = data.item[int(data.offsets[user]) : int(end)][::-1]
    _, first = np.unique(items, return_index=True)
    return items[np.sort(first)]


def baseline_scores(
    name: str, data: SequenceData, users: np.ndarray, ends: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """[U, N+1] scores of one baseline for the given (user, end) rows; column 0 = padding (-inf)."""
    pop = counts / (counts.max() + 1.0)  # in [0, 1): below any recency score
    scores = np.tile(pop, (len(users), 1))
    if name == "recent_items":
        for r, (u, e) in enumerate(zip(users, ends)):
            recent = recent_distinct(data, int(u), int(e))
            scores[r, recent] = 1.0 + np.arange(len(recent), 0, -1)  # newest highest
    elif name != "popularity":
        raise ValueError(f"unknown baseline {name!r}: expected one of {BASELINES}")
    scores[:, 0] = -np.inf
    return scores


def baseline_metrics(data: SequenceData, split: Split, protocol: Protocol, which: str) -> dict[str, Any]:
    """``{"popularity": {HR@10, NDCG@10, MRR@10, users}, "recent_items": {...} or None}`` for ``which``."""
    if which not in ("valid", "test"):
        raise ValueError(f"which={which!r}: expected valid or test")
    if protocol.negatives is not None:
        return dict.fromkeys(BASELINES)
    pos = split.valid_pos if which == "valid" else split.test_pos
    users = split.users
    if len(users) == 0:
        return dict.fromkeys(BASELINES)
    # every user's events before their held-out event of this split (users without targets: all training events)
    all_users = np.arange(data.n_users)
    ends = split.train_end.copy()
    if which == "test":
        ends[users] = split.test_pos
    counts = popularity_counts(data, all_users, ends)
    out: dict[str, Any] = {}
    for name in BASELINES:
        if name == "recent_items" and protocol.exclude_seen:
            out[name] = None  # every recent item is excluded: it would be popularity again
            continue
        ranks = []
        step = max(1, _BLOCK_CELLS // (data.n_items + 1))
        for lo in range(0, len(users), step):
            u, e = users[lo : lo + step], pos[lo : lo + step]
            scores = baseline_scores(name, data, u, e, counts)
            exclude = exclusion_mask(data, u, e) if protocol.exclude_seen else None
            ranks.append(M.rank_of_targets(scores, data.item[e], exclude))
        out[name] = {**M.ranking_metrics(np.concatenate(ranks), K), "users": int(len(users))}
    return out
