"""Cached head outputs for fusion: computed once per run and context, stored in the run folder.

A context is the history the model reads: ``test`` (each evaluated user's events before
the test target), ``valid`` (before the validation target) or ``all`` (every event: what
``recommend`` uses). For each context the model runs once over every user: engagement
log-probabilities over every item and the predicted rating of every item. They are
normalized into the signals of :mod:`core.fusion.formula` and kept, with the item signals
(popularity and freshness: counted over the training events for ``test``/``valid``, so
no held-out event leaks into them, and over every event for ``all``), as safetensors
plus a JSON sidecar (checksum, protocol, the model's weights checksum) under
``<run>/fusion/``. A weight change then reads only these arrays: no forward pass.
The users are scored in blocks of one forward batch; in a job launched over several
processes (``behaviorlens candidates --nproc-per-node N``) each process scores its share of
the blocks and every process gets them all, in order: the same arrays as one process.

Candidate pre-selection. A catalogue of up to ``FULL_ITEMS`` items keeps every eligible
item of every user as a candidate: the re-ranking and its metrics are exact. Above that
a [U, N] table does not fit (50,000 × 20,000 is 10^9 cells), so each user keeps the union
of their top ``per_anchor`` eligible items under each anchor weighting
(``core.fusion.ranking.ANCHORS``: each signal alone, the 6 midpoints of the simplex's
edges, its centroid) plus the held-out target, as a padded [U, M] index array
(M = the largest union, at most 11·per_anchor + 1). Per-signal lists alone miss items
that are good on two signals at once; the anchors cover the mixtures between them. For
each anchor a the best score left out, outside_a, is stored per user; any item left out
scores at most Σ_a λ_a · outside_a for every way λ ≥ 0 of writing the weights as a
mixture of anchors. When a user's k-th best candidate scores above that bound, their
top-k, and so every @k metric, is provably the same as over the whole catalogue;
:func:`core.fusion.ranking.rerank` reports that share as ``exact``.
Already-seen items follow the run's protocol: excluded from the candidates, or kept.
"""

from __future__ import annotations

import numpy as np
import torch

from core.data.batches import leave_last_out
from core.data.sequences import SequenceData
from core.errors import DataError
from core.fusion.formula import (
    ENGAGEMENT,
    FRESHNESS,
    POPULARITY,
    RATING,
    SIGNALS,
    freshness_signal,
    fuse,
    minmax_probability,
    popularity_signal,
    rating_signal,
)
from core.fusion.ranking import ANCHORS, NO_OUTSIDE, Candidates, top_columns
from core.model import distributed
from core.model.evaluation import by_length, exclusion_mask, user_scores
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale
from core.model.recommender import Recommender

CONTEXTS = ("test", "valid", "all")

FULL_ITEMS = 5_000  # catalogues up to this size keep every item as a candidate (exact)
PER_ANCHOR = 40  # above it: each user's top-40 items under each anchor weighting, unioned
_PAIRS = 1 << 16  # (user, item) pairs per rating-head call
_BATCH = 256  # users per forward batch and per block, as in evaluation (same batches, same bits): [256, items] cells
_SLOTS = ("items", "engagement", "rating")  # [U, M] arrays of a block, padded with empty slots


# -- item signals ---------------------------------------------------------------------------
def item_signals(data: SequenceData, train_end: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(popularity, freshness, counts), each [N+1], over events before ``train_end`` (None: all)."""
    n1 = data.n_items + 1
    keep = np.ones(len(data.item), bool)
    if train_end is not None:
        owner = np.repeat(np.arange(data.n_users), data.lengths())
        keep = np.arange(len(data.item)) < train_end[owner]
    counts = np.bincount(data.item[keep], minlength=n1).astype(np.float32)
    last = np.full(n1, -np.inf)
    np.maximum.at(last, data.item[keep], data.ts[keep].astype(np.float64))
    last[~np.isfinite(last)] = np.nan
    counts[0] = 0
    return popularity_signal(counts), freshness_signal(last), counts


def value_range(data: SequenceData) -> tuple[float, float] | None:
    """(smallest, largest) observed event value; None when the dataset has none."""
    values = data.value[~np.isnan(data.value)]
    return (float(values.min()), float(values.max())) if values.size else None


# -- pre-selection ----------------------------------------------------------------------------
def anchor_scores(
    anchor: np.ndarray, eng: np.ndarray, rat64: np.ndarray, pop: np.ndarray, fresh: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """[B, N+1] float64 scores under one anchor weighting, -inf where not eligible.

    The formula's own sums (:func:`core.fusion.formula.fuse`), as ``core.fusion.ranking.fused_scores``
    adds them, so the values are bit-identical to a weight change.
    """
    weights = dict(zip(SIGNALS, anchor))
    score = np.zeros(eng.shape) + fuse({ENGAGEMENT: eng, RATING: rat64}, weights)
    score += fuse({POPULARITY: pop, FRESHNESS: fresh}, weights)  # [N+1] broadcast over the rows, or 0.0
    score[~eligible] = -np.inf
    return score


def _global_listing(
    anchor: np.ndarray, pop: np.ndarray, fresh: np.ndarray, eligible: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """An item-only anchor ranks every user's items in one global order: each user's first ``depth`` eligible.

    Same values and tie rule as ``top_columns(anchor_scores(...))``, without a [B, N] sort.
    """
    score = np.zeros(len(pop)) + fuse({POPULARITY: pop, FRESHNESS: fresh}, dict(zip(SIGNALS, anchor)))
    order = np.lexsort((np.arange(len(score)), -score))
    reach = min(len(order), depth + int((~eligible).sum(1).max()))
    ok = eligible[:, order[:reach]]  # [B, reach]
    keep = ok & (np.cumsum(ok, 1) <= depth)
    cols = order[:reach][np.nonzero(keep)[1]].reshape(len(eligible), depth)
    return cols, score[cols]


def select_block(
    eng: np.ndarray,
    rat: np.ndarray,
    pop: np.ndarray,
    fresh: np.ndarray,
    eligible: np.ndarray,
    targets: np.ndarray,
    per_anchor: int | None,
) -> dict[str, np.ndarray]:
    """Candidates of a block of users: items [B, M] (ascending, 0 = empty), signals [B, M], outside [B, A].

    Args: eng [B, N+1] float64, rat [B, N+1] float32, pop/fresh [N+1], eligible [B, N+1] bool
    (column 0 False), targets [B] (0 = none). ``per_anchor`` None keeps every eligible item.
    Each anchor's 2m+1 best items are listed (ties: smaller index first); the first m are
    candidates, and the best listed item that no anchor picked gives the exact best score
    left out (else the last listed score bounds it).
    """
    b, n1 = eng.shape
    rows = np.arange(b)[:, None]
    if per_anchor is None:
        items = np.where(eligible[:, 1:], np.arange(1, n1, dtype=np.int32)[None, :], 0).astype(np.int32)
        return {
            "items": items,
            "engagement": eng[:, 1:],
            "rating": rat[:, 1:],
            "outside": np.full((b, len(ANCHORS)), NO_OUTSIDE),
        }
    m = min(per_anchor, n1 - 1)
    picked = np.zeros((b, n1), bool)
    rat64, listed = rat.astype(np.float64), []
    depth = min(2 * m + 1, n1)
    for anchor in ANCHORS:
        if not (anchor[0] or anchor[1]) and (eligible.sum(1) >= depth).all():
            cols, values = _global_listing(anchor, pop, fresh, eligible, depth)
        else:
            score = anchor_scores(anchor, eng, rat64, pop, fresh, eligible)
            cols = top_columns(score, depth)
            values = score[rows, cols]
        listed.append((cols, values))
        picked[rows, cols[:, :m]] = True
    picked &= eligible
    picked[rows[:, 0], targets] |= targets > 0
    picked[:, 0] = False
    outside = np.empty((b, len(ANCHORS)))
    for a, (cols, values) in enumerate(listed):
        free = ~picked[rows, cols] & np.isfinite(values)
        first = values[rows[:, 0], free.argmax(1)]
        outside[:, a] = np.where(free.any(1), first, values[:, -1])
    r, col = np.nonzero(picked)  # row-major: columns ascending within a row
    counts = picked.sum(1)
    slot = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = int(counts.max()) if b else 0
    items = np.zeros((b, width), np.int32)
    e, ra = np.zeros((b, width)), np.zeros((b, width), np.float32)
    items[r, slot], e[r, slot], ra[r, slot] = col, eng[r, col], rat[r, col]
    outside = np.where(np.isfinite(outside), outside, NO_OUTSIDE)  # float64: a bound must not round down
    return {"items": items, "engagement": e, "rating": ra, "outside": outside}


def stack_blocks(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack blocks row-wise, padding [B, M_b] slot arrays to the widest M with empty slots.

    Empties ``blocks`` as it copies, so memory peaks at the result plus one block.
    """
    width = max(blk["items"].shape[1] for blk in blocks)
    rows = sum(len(blk["items"]) for blk in blocks)
    out = {
        name: np.zeros((rows, width) if name in _SLOTS else (rows, *a.shape[1:]), a.dtype)
        for name, a in blocks[0].items()
    }
    lo = 0
    while blocks:
        blk = blocks.pop(0)
        n = len(blk["items"])
        for name, a in blk.items():
            if name in _SLOTS:
                out[name][lo : lo + n, : a.shape[1]] = a
            else:
                out[name][lo : lo + n] = a
        lo += n
    return out


def target_columns(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[U] column of each target in ``items`` (-1 when there is none)."""
    hit = (items == targets[:, None]) & (targets[:, None] > 0)
    return np.where(hit.any(1), hit.argmax(1), -1).astype(np.int64)


# -- model outputs ------------------------------------------------------------------------------
@torch.inference_mode()
def all_ratings(model: BehaviorModel, states: torch.Tensor, scale: RatingScale) -> np.ndarray:
    """De-standardized predicted rating of every item for every state: [B, N+1] float32."""
    n1 = model.cfg.n_items + 1
    reprs = model.items()  # [N+1, D]
    idx = torch.arange(n1, device=states.device)
    out = np.empty((len(states), n1), np.float32)
    step = max(1, _PAIRS // n1)
    for lo in range(0, len(states), step):
        st = states[lo : lo + step]  # [b, De + 2]
        r = model.rating(st.repeat_interleave(n1, 0), reprs.repeat(len(st), 1), idx.repeat(len(st)))
        out[lo : lo + len(st)] = np.asarray(scale.restore(r.float().view(len(st), n1).cpu().numpy()))
    return out


def build_candidates(
    rec: Recommender,
    context: str,
    exclude_seen: bool,
    target_behavior: str | None,
    per_anchor: int = PER_ANCHOR,
    full_items: int = FULL_ITEMS,
    actual_time: bool = False,
) -> Candidates:
    """Run the model of a fitted ``Recommender`` once over every user of ``context``; the cached signals.

    Held-out events are asked at the stand-in time unless ``actual_time``. A target the
    user met before is not a candidate when earlier items are excluded (``target_col`` -1:
    a miss), so the candidates depend on the history alone."""
    if context not in CONTEXTS:
        raise DataError(f"context {context!r}: expected one of {CONTEXTS}")
    data: SequenceData = rec.data_
    split = rec.split_ if target_behavior == rec.protocol_.target_behavior else leave_last_out(data, target_behavior)
    if context == "all":
        users, ends, targets = np.arange(data.n_users), data.offsets[1:].copy(), np.zeros(data.n_users, np.int64)
        truth = np.full(data.n_users, np.nan, np.float32)
    else:
        ends = split.valid_pos if context == "valid" else split.test_pos
        users, targets, truth = split.users, data.item[ends], data.value[ends].astype(np.float32)
    pop, fresh, counts = item_signals(data, None if context == "all" else split.train_end)
    vrange = value_range(data)
    # users in evaluation's order (by history length) and batches, so that the scores are evaluation's, bit for bit;
    # the rows go back to the users' order below
    order = by_length(data, users, ends, rec.model_.cfg.max_len)
    given = users, targets, truth
    users, ends, targets = users[order], ends[order], targets[order]
    m = None if data.n_items <= full_items else per_anchor
    found, n_blocks = {}, -(-len(users) // _BATCH)  # one forward batch of users per block
    for i in distributed.mine(n_blocks):  # in a sharded job (torch.distributed) this rank's blocks
        sl = slice(i * _BATCH, (i + 1) * _BATCH)
        scores, states = user_scores(rec.model_, data, users[sl], ends[sl], rec.device_, _BATCH, actual_time)
        mask = exclusion_mask(data, users[sl], ends[sl]) if exclude_seen else np.zeros(scores.shape, bool)
        mask[:, 0] = True
        rows = np.arange(len(mask))
        listed = np.where(mask[rows, targets[sl]], 0, targets[sl])  # an excluded target is not listed
        raw = all_ratings(rec.model_, states, rec.scale_)
        block = select_block(
            minmax_probability(scores, ~mask), rating_signal(raw, vrange), pop, fresh, ~mask, listed, m
        )
        found[i] = (block, raw[rows, targets[sl]])
    merged = distributed.in_order(found, n_blocks)  # every rank's blocks, in user order
    blocks, predicted = [b for b, _ in merged], [p for _, p in merged]
    if not blocks:
        raise DataError(f"no user has a {context} target under this protocol: nothing to rank")
    back = np.argsort(order)
    out = {k: v[back] for k, v in stack_blocks(blocks).items()}  # every array is one row per user
    users, targets, truth = given
    target_rating = np.where(targets > 0, np.concatenate(predicted)[back], np.nan).astype(np.float32)
    return Candidates(
        users=users.astype(np.int64),
        items=out["items"],
        engagement=out["engagement"],
        rating=out["rating"],
        popularity=pop,
        freshness=fresh,
        popularity_count=counts,
        outside=out["outside"],
        targets=targets.astype(np.int64),
        target_col=target_columns(out["items"], targets),
        target_rating=target_rating,
        target_value=np.where(targets > 0, truth, np.nan).astype(np.float32),
    )
