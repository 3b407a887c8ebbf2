"""The new-items protocol: each user's last event on an item held out of training, full ranking.

A run trained with ``cold_items`` (:mod:`core.model.held_out`) never saw these items' events. For every user
with an event on one of them, the target is the user's last such event (of the target behavior, when the
run has one); the history is every event of the user strictly before it in time (events on other held-out
items included, read like any event: through their text and their untrained rows). Nothing at or after the
target is known, not even its timestamp: the prediction is asked at the stand-in time (the last history
event + the run's typical next-visit gap). Every item is a candidate (full ranking), less the user's
earlier items where the run's protocol excludes them. Users with no event before their target are skipped.

Beside the model, under the same protocol: ``popularity`` (counts over the events the model trained on, so
every held-out item counts 0: it cannot rank them), ``recent_items`` (where earlier items stay candidates)
and ``random`` (the expected metrics of a uniformly random ranking of each user's candidates: HR@10 = 10 /
the number of candidates).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from core.data.sequences import SequenceData
from core.errors import DataError
from core.model import metrics as M
from core.model.baselines import baseline_scores, popularity_counts
from core.model.evaluation import K, exclusion_mask, score_events
from core.model.fitted import Fitted
from core.model.held_out import HeldOut, held_out_index
from core.model.protocol import STANDIN, Protocol


def new_item_targets(
    data: SequenceData, held_idx: np.ndarray, target_behavior: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users [U], history ends [U], target positions [U]): each user's last event on a held-out item (of
    ``target_behavior`` when given) and the end of their events strictly before its timestamp."""
    held = np.zeros(data.n_items + 1, dtype=bool)
    held[held_idx] = True
    code = None if target_behavior is None else data.behaviors.index(target_behavior)
    users, ends, pos = [], [], []
    for u in range(data.n_users):
        start, stop = int(data.offsets[u]), int(data.offsets[u + 1])
        hit = held[data.item[start:stop]]
        if code is not None:
            hit &= data.behavior[start:stop] == code
        found = np.flatnonzero(hit)
        if len(found) == 0:
            continue
        target = start + int(found[-1])
        end = start + int(np.searchsorted(data.ts[start:stop], data.ts[target], side="left"))
        if end > start:  # at least one event strictly before the target's time
            users.append(u)
            ends.append(end)
            pos.append(target)
    as_array = (np.array(x, dtype=np.int64) for x in (users, ends, pos))
    return tuple(as_array)  # type: ignore[return-value]


def evaluate_new_items(
    fitted: Fitted, every: SequenceData, held: HeldOut, exclude_seen: bool, target_behavior: str | None
) -> dict[str, Any]:
    """The model's metrics (as :func:`~core.model.evaluation.evaluate_split`'s, plus ``protocol``, ``label``,
    ``request_time``, ``held_out_items``, ``held_out_share``) and ``baselines`` under the new-items protocol.

    ``fitted`` is the run's (its data the training view), ``every`` all the dataset's events over the same
    vocabulary. DataError when no user has an event on a held-out item after an earlier event."""
    if target_behavior is not None and target_behavior not in every.behaviors[1:]:
        raise DataError(f"target behavior {target_behavior!r} does not occur; behaviors are {every.behaviors[1:]}")
    protocol = Protocol(exclude_seen, target_behavior, None, STANDIN, held.share, new_items=True)
    users, ends, pos = new_item_targets(every, held_out_index(every, held), target_behavior)
    if len(users) == 0:
        raise DataError(
            f"no user has an event on one of the {len(held.items)} held-out items after an earlier event of theirs: "
            "the new-items protocol has nothing to score (train with a larger --cold-items share)"
        )
    out = score_events(replace(fitted, data=every, protocol=protocol), users, ends, pos)
    counts = popularity_counts(fitted.data, np.arange(fitted.data.n_users), fitted.split.train_end)
    return {
        "protocol": protocol.name,
        "label": protocol.label,
        "request_time": protocol.request_time,
        **out,
        "held_out_items": len(held.items),
        "held_out_share": held.share,
        "baselines": _baselines(every, users, ends, pos, counts, exclude_seen),
    }


def _baselines(
    data: SequenceData, users: np.ndarray, ends: np.ndarray, pos: np.ndarray, counts: np.ndarray, exclude_seen: bool
) -> dict[str, Any]:
    """popularity, recent_items (None where earlier items are excluded) and random, on the same targets."""
    exclude = exclusion_mask(data, users, ends) if exclude_seen else None
    targets = data.item[pos]
    out: dict[str, Any] = {}
    for name in ("popularity", "recent_items"):
        if name == "recent_items" and exclude_seen:
            out[name] = None  # every recent item is excluded: it would be popularity again
            continue
        ranks = M.rank_of_targets(baseline_scores(name, data, users, ends, counts), targets, exclude)
        out[name] = {**M.ranking_metrics(ranks, K), "users": int(len(users))}
    out["random"] = {**random_ranking(data.n_items, targets, exclude), "users": int(len(users))}
    return out


def random_ranking(n_items: int, targets: np.ndarray, exclude: np.ndarray | None) -> dict[str, float]:
    """The expected HR@K, NDCG@K, MRR@K of a uniformly random order of each user's candidates (every item, less
    the ``exclude`` [U, N+1] ones; a target that is excluded is a miss): the rank is uniform over 0..n-1."""
    if exclude is None:
        n = np.full(len(targets), n_items)
        hit = np.ones(len(targets), dtype=bool)
    else:
        n = (~exclude[:, 1:]).sum(1)
        hit = ~exclude[np.arange(len(targets)), targets]
    r = np.arange(K)
    gains = {f"HR@{K}": np.ones(K), f"NDCG@{K}": 1.0 / np.log2(r + 2.0), f"MRR@{K}": 1.0 / (r + 1.0)}
    cum = {name: np.concatenate([[0.0], np.cumsum(g)]) for name, g in gains.items()}  # sums over ranks < k
    reach = np.minimum(K, n)
    return {name: float(np.mean(np.where(hit & (n > 0), c[reach] / np.maximum(n, 1), 0.0))) for name, c in cum.items()}
