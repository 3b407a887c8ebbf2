"""Re-ranking from cached candidates: fused scores, top-k, target ranks, exactness bound, metrics.

The formula and the signals are :mod:`core.fusion.formula`; the candidates are computed and
chosen by :mod:`core.fusion.candidates`. A weight change is pure array work over the
[U, M] candidate table, done in blocks of users so that temporary memory stays bounded.
Ties rank the smaller item index first, as in :mod:`core.model.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import DataError
from core.fusion.formula import (
    ENGAGEMENT,
    FRESHNESS,
    POPULARITY,
    RATING,
    SIGNALS,
    K,
    fuse,
    normalize_weights,
    weight_grid,
)
from core.model import metrics as M

NO_OUTSIDE = -1.0  # ``Candidates.outside`` when every eligible item is a candidate
_CHUNK_CELLS = 1 << 21  # candidate cells re-ranked per block of users
_MARGIN = 1e-12  # the exactness bound allows for float64 rounding of the sums
# Anchor weightings of the pre-selection (core.fusion.candidates): the 4 one-signal vertices of the
# weight simplex, the 6 midpoints of its edges and its centroid. Rows sum to 1.
_PAIRS = [(i, j) for i in range(4) for j in range(i + 1, 4)]
ANCHORS = np.vstack([np.eye(4), [np.eye(4)[i] / 2 + np.eye(4)[j] / 2 for i, j in _PAIRS], np.full((1, 4), 0.25)])


# -- cached candidates ----------------------------------------------------------------------
@dataclass
class Candidates:
    """Normalized signals of every user's candidate items, for one context (test, valid or all).

    Rows are users, columns candidate slots; ``items`` is ascending within a row over its
    real candidates (0 = empty slot), so a smaller column means a smaller item index.
    """

    users: np.ndarray  # [U] int64 rows of SequenceData.users
    items: np.ndarray  # [U, M] int32 item index, 0 = no candidate
    engagement: np.ndarray  # [U, M] float64
    rating: np.ndarray  # [U, M] float32
    popularity: np.ndarray  # [N+1] float32 signal
    freshness: np.ndarray  # [N+1] float32 signal
    popularity_count: np.ndarray  # [N+1] float32 events per item
    outside: np.ndarray  # [U, A] float64 max anchor score over eligible non-candidates (NO_OUTSIDE: none)
    targets: np.ndarray  # [U] int64 held-out item (0 = none)
    target_col: np.ndarray  # [U] int64 column of the target (-1 = none)
    target_rating: np.ndarray  # [U] float32 predicted rating of the target (NaN = none)
    target_value: np.ndarray  # [U] float32 its true value (NaN = none)

    @property
    def n_items(self) -> int:
        return len(self.popularity) - 1

    @property
    def full(self) -> bool:
        """Every eligible item is a candidate for every user (ranking is exact)."""
        return bool((self.outside <= NO_OUTSIDE).all())


ROW_FIELDS = (
    "users",
    "items",
    "engagement",
    "rating",
    "outside",
    "targets",
    "target_col",
    "target_rating",
    "target_value",
)


def rows_of(c: Candidates, rows: slice) -> Candidates:
    """The same candidates restricted to some users (views, no copy)."""
    return Candidates(**{**c.__dict__, **{f: getattr(c, f)[rows] for f in ROW_FIELDS}})


def fused_scores(c: Candidates, weights: Mapping[str, float]) -> np.ndarray:
    """[U, M] float64 fused scores of the candidates; -inf in empty slots. No model is run."""
    out = np.zeros(c.items.shape) + fuse({ENGAGEMENT: c.engagement, RATING: c.rating}, weights)
    item_part = fuse({POPULARITY: c.popularity, FRESHNESS: c.freshness}, weights)  # [N+1] or 0.0
    if isinstance(item_part, np.ndarray):
        out += item_part[c.items]
    out[c.items == 0] = -np.inf
    return out


def top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """[U, k] columns of each row's k best scores, best first; ties: smaller column first."""
    k = min(k, scores.shape[1])
    rows = np.arange(len(scores))[:, None]
    part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k :]
    kth = scores[rows, part].min(1, keepdims=True)
    crowded = (scores >= kth).sum(1) > k  # a tie at the cut: keep the smaller columns
    if crowded.any():
        sub, cut = scores[crowded], kth[crowded]
        above, tied = sub > cut, sub == cut
        keep = above | (tied & (np.cumsum(tied, 1) <= k - above.sum(1, keepdims=True)))
        part[crowded] = np.nonzero(keep)[1].reshape(-1, k)
    s = scores[rows, part]
    return np.take_along_axis(part, np.lexsort((part, -s), axis=1), 1)


def target_ranks(scores: np.ndarray, c: Candidates) -> np.ndarray:
    """0-based rank of each target among the candidates (same tie rule as ``rank_of_targets``).

    A target that is not a candidate (``target_col`` -1: excluded as an earlier item) is a miss:
    its rank is the number of items."""
    col = np.maximum(c.target_col, 0)
    ts = scores[np.arange(len(scores)), col][:, None]
    ahead = (scores > ts).sum(1)
    ahead += ((scores == ts) & (np.arange(scores.shape[1])[None, :] < col[:, None])).sum(1)
    return np.where(c.target_col < 0, len(c.popularity) - 1, ahead).astype(np.int64)


def anchor_mixtures(weights: Mapping[str, float]) -> np.ndarray:
    """[D, A] ways of writing ``weights`` as a mixture of the anchors (λ ≥ 0, λ @ ANCHORS = w).

    1. the vertices alone (λ = w); 2. edge midpoints, greedily pairing the two largest
    remaining weights; 3. the same after taking the centroid as far as it goes (4·min w).
    """
    w = np.array([normalize_weights(weights)[s] for s in SIGNALS])
    plain = np.zeros(len(ANCHORS))
    plain[:4] = w
    out = [plain]
    for centroid in (0.0, 4 * w.min()):
        lam, rest = np.zeros(len(ANCHORS)), w - centroid / 4
        lam[-1] = centroid
        while (rest > 1e-15).sum() > 1:
            i, j = np.argsort(-rest)[:2]
            t = min(rest[i], rest[j])
            lam[4 + _PAIRS.index((min(i, j), max(i, j)))] += 2 * t
            rest[i] -= t
            rest[j] -= t
        lam[:4] += np.clip(rest, 0, None)
        out.append(lam)
    return np.array(out)


def outside_bound(outside: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """[U] upper bound of the fused score of every non-candidate: min over the anchor mixtures.

    For a mixture λ, score_w(x) = Σ_a λ_a · score_a(x) ≤ Σ_a λ_a · outside_a.
    """
    return (outside @ anchor_mixtures(weights).T).min(1)


@dataclass
class Ranking:
    """Top-k of every user under one weight setting."""

    items: np.ndarray  # [U, k] item index, -1 = fewer candidates
    scores: np.ndarray  # [U, k] float64
    exact: np.ndarray  # [U] bool: the top-k is provably the top-k over every eligible item


def rerank(c: Candidates, weights: Mapping[str, float], k: int = K, scores: np.ndarray | None = None) -> Ranking:
    """Re-rank every user from the cached signals; exact where the pre-selection bound holds."""
    scores = fused_scores(c, weights) if scores is None else scores
    cols = top_columns(scores, k)
    rows = np.arange(len(scores))[:, None]
    top_s = scores[rows, cols]
    items = np.where(np.isfinite(top_s), c.items[rows, cols], -1)
    bound = outside_bound(c.outside, weights)  # ≥ the score of any item that is not a candidate
    none_outside = (c.outside <= NO_OUTSIDE).all(1)
    exact = np.asarray(none_outside | (top_s[:, -1] > bound + _MARGIN) if cols.shape[1] == k else none_outside, bool)
    return Ranking(items=items, scores=top_s, exact=exact)


def fused_metrics(c: Candidates, weights: Mapping[str, float], k: int = K) -> dict[str, Any]:
    """HR/NDCG/MRR@k (full ranking), coverage@k, mean popularity@k, AUC, RMSE/MAE of the targets.

    Exact when every eligible item is a candidate (then engagement alone reproduces
    ``evaluate``). With pre-selected candidates they are exact for the ``exact_users`` share;
    for the others a target's rank is counted among the candidates only, and AUC is None.
    """
    if not len(c.targets) or (c.targets <= 0).any():
        raise DataError("these candidates have no held-out targets (context 'all'): metrics need test or valid")
    weights = normalize_weights(weights)
    step = max(1, _CHUNK_CELLS // max(1, c.items.shape[1]))
    parts = []
    for lo in range(0, len(c.users), step):  # blocks of users: bounded temporary memory
        sub = rows_of(c, slice(lo, lo + step))
        scores = fused_scores(sub, weights)
        parts.append((rerank(sub, weights, k, scores), target_ranks(scores, sub)))
    ranking = Ranking(*(np.concatenate([getattr(r, f) for r, _ in parts]) for f in ("items", "scores", "exact")))
    ranks = np.concatenate([t for _, t in parts])
    out: dict[str, Any] = M.ranking_metrics(ranks, k)
    n_cand = (c.items > 0).sum(1)
    out["AUC"] = float(np.mean(np.clip(1.0 - ranks / np.maximum(1, n_cand - 1), 0.0, 1.0))) if c.full else None
    has = ~np.isnan(c.target_value)
    out["RMSE"] = M.rmse(c.target_value[has], c.target_rating[has]) if has.any() else None
    out["MAE"] = M.mae(c.target_value[has], c.target_rating[has]) if has.any() else None
    shown = ranking.items[ranking.items > 0]
    out[f"coverage@{k}"] = M.catalogue_coverage(np.where(ranking.items > 0, ranking.items - 1, -1), c.n_items)
    out[f"mean_popularity@{k}"] = float(c.popularity_count[shown].mean()) if shown.size else 0.0
    out["exact_users"] = float(ranking.exact.mean())
    out["users"] = int(len(c.users))
    return out


def user_ranking(c: Candidates, row: int, weights: Mapping[str, float]) -> dict[str, np.ndarray]:
    """One user's candidates best first: item, score and every signal ([M'] arrays)."""
    items = c.items[row]
    keep = items > 0
    sig = {
        ENGAGEMENT: c.engagement[row][keep],
        RATING: c.rating[row][keep].astype(np.float64),
        POPULARITY: c.popularity[items[keep]].astype(np.float64),
        FRESHNESS: c.freshness[items[keep]].astype(np.float64),
    }
    score = fused_scores(rows_of(c, slice(row, row + 1)), weights)[0][keep]
    order = np.lexsort((items[keep], -score))
    return {"item": items[keep][order], "score": score[order], **{k: v[order] for k, v in sig.items()}}


SWEEP_METRICS = ("HR@10", "NDCG@10", "MRR@10", "coverage@10", "mean_popularity@10", "exact_users")


def sweep(c: Candidates, step: float = 0.25) -> list[dict[str, float]]:
    """Weights and @10 metrics of every point of the weight simplex on a ``step`` grid (the trade-off curve)."""
    rows = []
    for w in weight_grid(step):
        metrics = fused_metrics(c, w)
        rows.append({**w, **{m: metrics[m] for m in SWEEP_METRICS}})
    return rows
