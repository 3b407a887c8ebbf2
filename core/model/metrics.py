"""Evaluation metrics: pure numpy functions, no state.

Ranking metrics start from the 0-based rank of each user's held-out target item
among the candidates (``rank_of_targets`` for the full-ranking protocol,
``rank_among_sampled`` for the sampled one). Ties are broken by item index: when
two items score the same, the one with the smaller index ranks higher, so ranks
never depend on sort stability. Torch tensors are accepted (via ``np.asarray``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core._checks import check_whole
from core.errors import DataError

FULL_PROTOCOL = "full"
SAMPLED_PREFIX = "sampled-"
_CHUNK_ELEMENTS = 1 << 22  # cells of a [users, items] block processed at once


def protocol_name(n_negatives: int | None) -> str:
    """Label of an evaluation protocol: ``"full"`` or ``"sampled-{N}"``."""
    if n_negatives is None:
        return FULL_PROTOCOL
    return f"{SAMPLED_PREFIX}{check_whole('n_negatives', n_negatives, 1, hint='or None for the full ranking')}"


def _chunk_rows(n_cols: int) -> int:
    """Number of user rows per block so a block holds about ``_CHUNK_ELEMENTS`` cells."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


def _check_targets(targets: Any, n_users: int, n_items: int) -> np.ndarray:
    """Validate target item indices: [U] ints in [0, n_items)."""
    t = np.asarray(targets)
    if t.shape != (n_users,):
        raise DataError(f"targets must have shape ({n_users},) to match scores, got {t.shape}")
    if n_users and not np.issubdtype(t.dtype, np.integer):
        raise DataError(f"targets must be integer item indices, got dtype {t.dtype}")
    t = t.astype(np.int64)
    if n_users and (t.min() < 0 or t.max() >= n_items):
        raise DataError(f"targets must lie in [0, {n_items}), got values in [{t.min()}, {t.max()}]")
    return t


def _check_scores(scores: Any) -> np.ndarray:
    """Validate a [U, N] float score matrix."""
    s = np.asarray(scores)
    if s.ndim != 2:
        raise DataError(f"scores must be a 2-D [users, items] array, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise DataError(f"scores must be real numbers, got dtype {s.dtype}")
    return s


def _check_exclude(exclude: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Validate an optional boolean [U, N] mask of removed candidates."""
    if exclude is None:
        return None
    e = np.asarray(exclude)
    if e.shape != shape:
        raise DataError(f"exclude mask must have shape {shape} like scores, got {e.shape}")
    if e.dtype != np.bool_:
        raise DataError(f"exclude mask must be boolean, got dtype {e.dtype}")
    return e


def _target_scores(block: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Score of each row's target; [B]. NaN target scores are an error."""
    t_score = block[np.arange(len(targets)), targets]
    nan = np.isnan(t_score.astype(np.float64))
    if nan.any():
        raise DataError(f"the target item's score is NaN for {int(nan.sum())} user(s); expected numbers")
    return t_score


def rank_of_targets(scores: Any, targets: Any, exclude: Any = None) -> np.ndarray:
    """0-based rank of each user's target among all non-excluded items (full ranking).

    rank = #items scoring strictly higher + #items scoring equal with a smaller index,
    counted over items not in ``exclude``. A target that is itself excluded is a miss:
    its rank is N, below every cut-off.
    Items with NaN scores never outrank the target. Users are processed in blocks
    so memory stays bounded.

    Args:
        scores: [U, N] real scores, higher is better.
        targets: [U] int item indices.
        exclude: optional [U, N] bool mask of items removed from the candidates.
    Returns:
        [U] int64 ranks.
    """
    s = _check_scores(scores)
    n_users, n_items = s.shape
    t = _check_targets(targets, n_users, n_items)
    e = _check_exclude(exclude, s.shape)
    ranks = np.empty(n_users, dtype=np.int64)
    item_idx = np.arange(n_items)  # [N]
    step = _chunk_rows(n_items)
    for lo in range(0, n_users, step):
        block, tb = s[lo : lo + step], t[lo : lo + step]  # [B, N], [B]
        ts = _target_scores(block, tb)[:, None]  # [B, 1]
        ahead = (block > ts) | ((block == ts) & (item_idx[None, :] < tb[:, None]))  # [B, N]
        if e is not None:
            ahead &= ~e[lo : lo + step]
        ranks[lo : lo + step] = ahead.sum(axis=1)
    if e is not None:
        ranks[e[np.arange(n_users), t]] = n_items
    return ranks


def sample_negatives(n_items: int, targets: Any, n: int, rng: np.random.Generator, exclude: Any = None) -> np.ndarray:
    """Draw ``n`` distinct negative items per user, uniformly, without replacement.

    A negative is never the user's target nor an excluded item.

    Args:
        n_items: catalogue size N.
        targets: [U] int target item indices.
        n: negatives per user.
        rng: numpy Generator (the only source of randomness).
        exclude: optional [U, N] bool mask of items that must not be drawn.
    Returns:
        [U, n] int64 item indices, sorted ascending within each row.
    """
    if n_items < 1:
        raise DataError(f"n_items must be at least 1, got {n_items}")
    protocol_name(n)  # validates n
    t = _check_targets(targets, np.asarray(targets).size, n_items)
    e = _check_exclude(exclude, (len(t), n_items))
    out = np.empty((len(t), n), dtype=np.int64)
    step = _chunk_rows(n_items)
    for lo in range(0, len(t), step):
        tb = t[lo : lo + step]
        keys = rng.random((len(tb), n_items))  # [B, N] random sort keys
        banned = np.zeros_like(keys, dtype=bool) if e is None else e[lo : lo + step].copy()
        banned[np.arange(len(tb)), tb] = True
        available = n_items - banned.sum(axis=1)
        if (available < n).any():
            row = lo + int(np.flatnonzero(available < n)[0])
            raise DataError(f"user row {row} has {available.min()} candidate negatives, fewer than n={n}")
        keys[banned] = np.inf
        picked = np.argpartition(keys, n - 1, axis=1)[:, :n]  # the n smallest keys
        out[lo : lo + step] = np.sort(picked, axis=1)
    return out


def rank_among_sampled(scores: Any, targets: Any, negatives: Any) -> np.ndarray:
    """0-based rank of each target among itself plus its sampled negatives.

    Same tie rule as ``rank_of_targets`` (equal score, smaller item index ranks first).

    Args:
        scores: [U, N] real scores over the whole catalogue.
        targets: [U] int target item indices.
        negatives: [U, n] int item indices from ``sample_negatives``.
    Returns:
        [U] int64 ranks in [0, n].
    """
    s = _check_scores(scores)
    t = _check_targets(targets, s.shape[0], s.shape[1])
    neg = np.asarray(negatives)
    if neg.ndim != 2 or neg.shape[0] != s.shape[0]:
        raise DataError(f"negatives must have shape ({s.shape[0]}, n), got {neg.shape}")
    if neg.size and (not np.issubdtype(neg.dtype, np.integer) or neg.min() < 0 or neg.max() >= s.shape[1]):
        raise DataError(f"negatives must be integer item indices in [0, {s.shape[1]})")
    rows = np.arange(s.shape[0])[:, None]
    ts = _target_scores(s, t)[:, None]  # [U, 1]
    ns = s[rows, neg]  # [U, n]
    ahead = (ns > ts) | ((ns == ts) & (neg < t[:, None]))
    return ahead.sum(axis=1).astype(np.int64)


def _check_ranks(ranks: Any, k: int) -> np.ndarray:
    """Validate [U] non-negative integer ranks and a positive integer k."""
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise DataError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    if not np.issubdtype(r.dtype, np.integer) or r.min() < 0:
        raise DataError(f"ranks must be non-negative integers (0 = top), got dtype {r.dtype}")
    check_whole("k", k, 1)
    return r


def hit_rate_at_k(ranks: Any, k: int) -> float:
    """Share of users whose target is in the top k (rank < k)."""
    r = _check_ranks(ranks, k)
    return float(np.mean(r < k))


def ndcg_at_k(ranks: Any, k: int) -> float:
    """Mean NDCG@k with one relevant item: 1/log2(rank+2) if rank < k else 0."""
    return float(np.mean(ndcg_gains(ranks, k)))


def ndcg_gains(ranks: Any, k: int) -> np.ndarray:
    """Each target's NDCG@k with one relevant item: 1/log2(rank+2) if rank < k else 0."""
    r = _check_ranks(ranks, k)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr_at_k(ranks: Any, k: int) -> float:
    """Mean reciprocal rank cut at k: 1/(rank+1) if rank < k else 0."""
    r = _check_ranks(ranks, k)
    return float(np.mean(np.where(r < k, 1.0 / (r + 1.0), 0.0)))


def ranking_metrics(ranks: Any, k: int = 10) -> dict[str, float]:
    """``{"HR@k": ..., "NDCG@k": ..., "MRR@k": ...}`` keyed with the actual k."""
    return {
        f"HR@{k}": hit_rate_at_k(ranks, k),
        f"NDCG@{k}": ndcg_at_k(ranks, k),
        f"MRR@{k}": mrr_at_k(ranks, k),
    }


def auc(labels: Any, scores: Any) -> float:
    """Binary ROC AUC via the Mann-Whitney rank statistic; tied scores count 0.5.

    Args:
        labels: [M] values in {0, 1} (or bool).
        scores: [M] real scores, higher means more likely positive.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape:
        raise DataError(f"labels and scores must be 1-D of the same shape, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DataError("labels must be binary (0/1 or bool)")
    if np.isnan(s).any():
        raise DataError("scores contain NaN; expected numbers")
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of each tie group's last member
    avg_rank = (upper - (counts - 1) / 2.0)[inverse]  # [M] mid-ranks
    return float((avg_rank[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _masked_pair(y: Any, yhat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions where the target is not NaN; both [M']."""
    a, b = np.asarray(y, dtype=np.float64), np.asarray(yhat, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"y and yhat must have the same shape, got y {a.shape} and yhat {b.shape}")
    keep = ~np.isnan(a)
    if not keep.any():
        raise DataError("y has no non-NaN values to score")
    if np.isnan(b[keep]).any():
        raise DataError("yhat is NaN where y has a value; expected a prediction for every target")
    return a[keep], b[keep]


def rmse(y: Any, yhat: Any) -> float:
    """Root mean squared error over entries where ``y`` is not NaN."""
    a, b = _masked_pair(y, yhat)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y: Any, yhat: Any) -> float:
    """Mean absolute error over entries where ``y`` is not NaN."""
    a, b = _masked_pair(y, yhat)
    return float(np.mean(np.abs(a - b)))


def catalogue_coverage(topk_items: Any, n_items: int) -> float:
    """Distinct recommended items / catalogue size.

    Args:
        topk_items: [U, K] int item indices; negative values are padding and ignored.
        n_items: catalogue size N.
    """
    items = np.asarray(topk_items)
    if items.ndim != 2:
        raise DataError(f"topk_items must be a 2-D [users, k] array, got shape {items.shape}")
    if items.size and not np.issubdtype(items.dtype, np.integer):
        raise DataError(f"topk_items must be integer item indices, got dtype {items.dtype}")
    if n_items < 1:
        raise DataError(f"n_items must be at least 1, got {n_items}")
    valid = items[items >= 0]
    if valid.size and valid.max() >= n_items:
        raise DataError(f"topk_items holds item {valid.max()}, outside [0, {n_items})")
    return float(np.unique(valid).size / n_items)
