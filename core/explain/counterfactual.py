"""Counterfactual sets: the smallest set found of a user's events whose removal drops an item out of the top-K.

Definition. Item i is in u's top-K when its rank among u's candidate items (the run's
protocol; the candidate set is kept fixed) is ≤ K, ranks 1-based, ties to the lower
item index. A counterfactual set is a set S of u's events such that, with every
event of S masked in place (positions and times kept), i's rank is > K.

Search (not guaranteed to find the global minimum):

1. margin m(h) = logit_i(h) − (K-th largest logit among the other candidates): i is
   in the top-K exactly when m > 0 (up to ties);
2. greedy: order events by their leave-one-out attribution to m, m(h) − m(h without
   e), largest first, and take the shortest prefix (≤ ``max_removals`` events) that
   pushes i out (all prefixes scored in one batched pass);
3. prune: while putting back some event of the set leaves i out of the top-K, put
   back the least attributed such event (each round scores every "set minus one" in
   one batch); the result is 1-minimal: putting back any single event returns i to
   the top-K;
4. verify: re-score the final set; only a verified set is reported as found.

If i is not in the top-K to begin with, or no prefix of up to ``max_removals``
events pushes it out, ``found`` is False and ``message`` says so plainly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from core._checks import check_whole, finite_or_none
from core.explain.scorer import HistoryScorer
from core.explain.subject import Labels, history_scorer, item_index, subject_for, user_row
from core.model.evaluation import exclusion_mask
from core.model.recommender import Recommender

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # removed [S, n] bool -> logits [S, N+1]
MAX_REMOVALS = 20


@dataclass
class CounterfactualSet:
    """The result of a counterfactual search for one (user, item, K)."""

    user: str
    item: str
    k: int
    found: bool
    message: str
    events: list[dict[str, Any]]  # the removed events (EventAttribution fields, attribution = LOO of the margin)
    rank_before: int
    rank_after: int | None  # rank with the set removed (with the best prefix tried when not found)
    verified: bool
    max_removals: int
    n_events: int
    evaluations: int  # histories scored
    runtime_ms: float = 0.0
    run: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.events)

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none({**asdict(self), "size": self.size})


@dataclass
class Search:
    """The raw search result over event positions 0..n-1."""

    found: bool
    positions: list[int]
    rank_before: int
    rank_after: int | None
    attributions: np.ndarray  # [n] LOO of the margin
    evaluations: int


def ranks_and_margins(logits: torch.Tensor, item: int, eligible: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """logits [S, N+1] -> 1-based rank of ``item`` among ``eligible`` items [S], and the top-``k`` margin [S]."""
    others = eligible.clone()
    others[item] = False
    own = logits[:, item : item + 1]
    idx = torch.arange(logits.shape[1])
    ahead = ((logits > own) | ((logits == own) & (idx < item))) & others
    ranks = 1 + ahead.sum(1)
    n_others = int(others.sum())
    if n_others < k:  # fewer rivals than places: the item cannot leave the top-k
        return ranks.numpy(), np.full(logits.shape[0], np.inf)
    kth = logits.masked_fill(~others, float("-inf")).topk(k, dim=1).values[:, -1]
    return ranks.numpy(), (own[:, 0] - kth).double().numpy()


def search(
    logits_fn: LogitsFn, n: int, item: int, eligible: torch.Tensor, k: int, max_removals: int = MAX_REMOVALS
) -> Search:
    """Greedy by leave-one-out attribution of the margin, then prune, then verify (see the module doc)."""

    def rank_of(removed: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return ranks_and_margins(logits_fn(removed), item, eligible, k)

    loo = torch.cat([torch.zeros(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)])  # [n+1, n]
    ranks, margins = rank_of(loo)
    attributions, evaluations = margins[0] - margins[1:], n + 1
    if ranks[0] > k or n == 0:
        return Search(False, [], int(ranks[0]), None, attributions, evaluations)
    order = np.argsort(-attributions, kind="stable")[:max_removals]
    prefixes = torch.zeros(len(order), n, dtype=torch.bool)
    for step in range(len(order)):
        prefixes[step:, order[step]] = True  # row s removes order[:s + 1]
    prefix_ranks, _ = rank_of(prefixes)
    evaluations += len(order)
    out = np.flatnonzero(prefix_ranks > k)
    if not out.size:
        worst = int(prefix_ranks.max()) if len(order) else None
        return Search(False, [], int(ranks[0]), worst, attributions, evaluations)
    chosen, pruned = prune([int(p) for p in order[: out[0] + 1]], attributions, lambda m: rank_of(m)[0], n, k)
    final = int(rank_of(_mask([chosen], n))[0][0])
    return Search(final > k, sorted(chosen), int(ranks[0]), final, attributions, evaluations + pruned + 1)


def prune(
    chosen: list[int], attributions: np.ndarray, ranks_of: Callable[[torch.Tensor], np.ndarray], n: int, k: int
) -> tuple[list[int], int]:
    """Put events back while the item stays out of the top-k, least attributed first, until none can be.

    Every round scores "the set without p" for each p in one batch; the loop ends when each of
    those returns the item to the top-k (1-minimal). Returns the set and the histories scored.
    """
    evaluations = 0
    while len(chosen) > 1:
        trials = [[q for q in chosen if q != p] for p in chosen]
        ranks = ranks_of(_mask(trials, n))
        evaluations += len(trials)
        still_out = [i for i in range(len(chosen)) if ranks[i] > k]
        if not still_out:
            break
        chosen = trials[min(still_out, key=lambda i: (attributions[chosen[i]], chosen[i]))]
    return chosen, evaluations


def _mask(sets: list[list[int]], n: int) -> torch.Tensor:
    """Removed masks [len(sets), n], one row per set of positions."""
    removed = torch.zeros(len(sets), n, dtype=torch.bool)
    for r, positions in enumerate(sets):
        removed[r, positions] = True
    return removed


def model_logits_fn(scorer: HistoryScorer) -> LogitsFn:
    """A HistoryScorer's history -> engagement logits [S, N+1] for removed masks [S, n] (chunked, no grad)."""
    model = scorer.model
    logits_scorer = HistoryScorer(model, scorer.batch, lambda task_e, task_r: model.engagement_logits(task_e).float())
    return logits_scorer.score_removed


def counterfactual_set(
    rec: Recommender,
    user: str,
    item: str,
    k: int = 10,
    max_removals: int = MAX_REMOVALS,
    *,
    labels: Labels | None = None,
) -> CounterfactualSet:
    """The counterfactual set of ``item`` (original ID) for the stored ``user`` under the fitted ``rec``."""
    for name, value in (("k", k), ("max_removals", max_removals)):
        check_whole(name, value, 1)
    start = time.perf_counter()
    labels = labels or Labels()
    subject = subject_for(rec, user, item, "engagement", labels=labels)
    row, idx, data = user_row(rec, user, labels.user), item_index(rec, item), rec.data_
    if rec.protocol_.exclude_seen:
        excluded = exclusion_mask(data, np.array([row]), data.offsets[row + 1 : row + 2])[0]
        excluded[idx] = False  # the item explained is ranked, even when the user met it before
    else:
        excluded = np.zeros(data.n_items + 1, bool)
    excluded[0] = True
    n = subject.scorer.n_events
    res = search(model_logits_fn(history_scorer(subject)), n, idx, torch.from_numpy(~excluded), k, max_removals)
    events = [{**subject.events[p], "attribution": float(res.attributions[p])} for p in res.positions]
    return CounterfactualSet(
        user=subject.user,
        item=str(item),
        k=k,
        found=res.found,
        message=_message(res, str(item), k, max_removals, n),
        events=events,
        rank_before=res.rank_before,
        rank_after=res.rank_after,
        verified=res.found,
        max_removals=max_removals,
        n_events=n,
        evaluations=res.evaluations,
        runtime_ms=(time.perf_counter() - start) * 1000,
        run=labels.run,
        details={"search": "greedy by leave-one-out attribution of the top-K margin, then pruned"},
    )


def _message(res: Search, item: str, k: int, max_removals: int, n: int) -> str:
    if res.found:
        return (
            f"removing these {len(res.positions)} event(s) drops item {item!r} from rank {res.rank_before} "
            f"to rank {res.rank_after}, out of the top {k} (verified by re-scoring)"
        )
    if res.rank_before > k:
        return f"item {item!r} is not in this user's top {k} (rank {res.rank_before}): there is nothing to push out"
    tried = min(max_removals, n)
    return (
        f"no counterfactual set found: removing up to {tried} of the user's {n} events (greedy by "
        f"leave-one-out attribution) leaves item {item!r} in the top {k} "
        f"(the furthest it went: rank {res.rank_after})"
    )
