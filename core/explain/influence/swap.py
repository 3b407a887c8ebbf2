"""Behavior swap: an interventional estimate of how much ONE event of each behavior type counts.

Estimand. Sample events e from users' recent histories (``events_per_user`` per
sampled user, uniformly among the newest ``recent`` events of the window that are at
least ``min_age`` seconds older than the user's newest event, seeded: the ongoing
session's next step is a different kind of influence). For each e let
C(e) = R(u) ∪ M(e): the user's top-K items and the ``similar`` items nearest to e's
item by cosine similarity of the model's item representation (the item itself
included). Let h_b(e) be u's history with e's behavior set to b (its value set to b's
most common value bucket in the data: no value for behaviors that never carry one),
and h_∅(e) the history with e masked in place (the mask token); every other event,
e's item, position and time are unchanged. With s_j = log p(j | ·) and pairs
P = {(e, j): e sampled, j ∈ C(e)}:

    per_event[b]           = mean over P of |s_j(h_b(e)) − s_j(h_∅(e))|
    per_behavior_signed[b] = mean over P of  s_j(h_b(e)) − s_j(h_∅(e))

in log-probability units. The same events, items and positions serve every b, so the
estimate is not confounded by which items and positions each behavior tends to
occupy (attribution averages are). ``per_event`` takes absolute values for the same
reason as :mod:`core.explain.influence.report`: an event lifts the items related to it and pushes
every other item down through the softmax normalizer, and the top-K part of C(e)
holds both kinds. Intervals: percentile bootstrap over users.

``per_behavior_share``, ``by_time_gap`` and ``by_category`` of a swap report come
from the same passes' unmodified rows: the leave-one-out attribution
s_j(h) − s_j(h_∅(e)) of each sampled event, grouped by the event's real behavior, age
or item category as in :mod:`core.explain.influence.report`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from core._checks import check_whole
from core.data.batches import Batch
from core.data.sequences import SequenceData, value_bucket
from core.errors import DataError
from core.explain.influence.estimands import MIN_AGE, N_BOOT, bootstrap, ratio_stats, summarize
from core.explain.influence.table import AttributionTable, items_target, top_items
from core.explain.scorer import expand, user_history
from core.model import distributed
from core.model.network import BehaviorModel
from core.model.recommender import Recommender
from core.progress import ProgressFn, report

EVENTS_PER_USER = 2
RECENT = 20
SIMILAR = 5


@dataclass(frozen=True)
class SwapSettings:
    """Which events are swapped and which items are scored (see the module docstring)."""

    events_per_user: int = EVENTS_PER_USER  # events sampled per user
    recent: int = RECENT  # ... among the user's newest ``recent`` events
    similar: int = SIMILAR  # items nearest to the event's item scored beside the recommended ones
    min_age: int = MIN_AGE  # seconds an event must be older than the user's newest event

    def check(self) -> SwapSettings:
        for name, low in (("events_per_user", 1), ("recent", 1), ("similar", 1), ("min_age", 0)):
            check_whole(f"swap {name}", getattr(self, name), low)
        return self


def typical_value_buckets(data: SequenceData) -> np.ndarray:
    """[B+1] most common value bucket of each behavior code (0 = no value; padding 0)."""
    buckets = value_bucket(data.value)
    out = np.zeros(len(data.behaviors), np.int64)
    for code in range(1, len(data.behaviors)):
        seen = buckets[data.behavior == code]
        out[code] = np.bincount(seen).argmax() if seen.size else 0
    return out


@torch.no_grad()
def item_directions(model: BehaviorModel) -> torch.Tensor:
    """The model's item representations, unit length: [N+1, D] (row 0 = padding)."""
    return torch.nn.functional.normalize(model.items().float(), dim=-1)


def similar_items(directions: torch.Tensor, item: int, m: int) -> np.ndarray:
    """The ``m`` items nearest to ``item`` by cosine of ``directions`` [N+1, D] (the item itself first)."""
    sim = directions @ directions[item]
    sim[0], sim[item] = -np.inf, np.inf
    return torch.argsort(sim, descending=True)[: min(m, len(sim) - 1)].numpy()


def swap_rows(batch: Batch, positions: np.ndarray, buckets: np.ndarray) -> tuple[Batch, torch.Tensor]:
    """Rows for each position p: behavior b = 1..B at p, then the original, then p masked.

    Returns the batch [P·(B+2), n] and the removed mask [P·(B+2), n].
    """
    n_beh = len(buckets) - 1
    per = n_beh + 2
    rows = expand(batch, len(positions) * per)
    behavior, value = rows.behavior.clone(), rows.value.clone()
    removed = torch.zeros_like(rows.mask)
    for i, p in enumerate(positions):
        lo = i * per
        behavior[lo : lo + n_beh, p] = torch.arange(1, n_beh + 1)
        value[lo : lo + n_beh, p] = torch.as_tensor(buckets[1:])
        removed[lo + per - 1, p] = True
    return replace(rows, behavior=behavior, value=value), removed


@torch.no_grad()
def score_rows(model: BehaviorModel, rows: Batch, removed: torch.Tensor, loss: str) -> torch.Tensor:
    """Log-probabilities over every item [R, N+1] of each row's last position."""
    model.eval()
    states = model.encode(model.tokens(rows), rows, removed, last=True)
    task_e, task_r = model.tasks(states, rows, removed, last=True)
    return items_target(model, np.arange(model.cfg.n_items + 1), loss)(task_e, task_r).double()


def user_swaps(
    model: BehaviorModel,
    data: SequenceData,
    u: int,
    recommended: np.ndarray,
    rng: np.random.Generator,
    buckets: np.ndarray,
    settings: SwapSettings,
    loss: str,
    directions: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, int, AttributionTable]:
    """One user's Σ over (e, j) of |s_j(h_b) − s_j(h_∅)| and of s_j(h_b) − s_j(h_∅) (each [B]), the pair
    count, and the leave-one-out table of the sampled events' real rows."""
    directions = item_directions(model) if directions is None else directions
    batch = user_history(data, u, model.cfg.max_len)
    n, n_beh = batch.item.shape[1], len(buckets) - 1
    ts = batch.ts[0].numpy()
    pool = np.arange(max(0, n - settings.recent), n)
    pool = pool[ts[pool] <= ts[-1] - settings.min_age]
    positions = np.sort(rng.choice(pool, size=min(settings.events_per_user, len(pool)), replace=False))
    if not len(positions):
        return np.zeros(n_beh), np.zeros(n_beh), 0, AttributionTable.concat([])
    rows, removed = swap_rows(batch, positions, buckets)
    scores = score_rows(model, rows, removed, loss).view(len(positions), n_beh + 2, -1)  # [P, B+2, N+1]
    abs_total, total, pairs, parts = np.zeros(n_beh), np.zeros(n_beh), 0, []
    end = int(data.offsets[u + 1])
    for i, p in enumerate(positions):
        item = int(batch.item[0, p])
        cand = np.union1d(recommended, similar_items(directions, item, settings.similar))
        diff = (scores[i][:, cand] - scores[i][-1:, cand]).numpy()  # [B+2, C]
        abs_total += np.abs(diff[:n_beh]).sum(1)
        total += diff[:n_beh].sum(1)
        pairs += len(cand)
        event = end - n + int(p)
        parts.append(
            AttributionTable(
                np.full(len(cand), u, np.int64), cand.astype(np.int64), np.full(len(cand), event, np.int64), diff[n_beh]
            )
        )
    return abs_total, total, pairs, AttributionTable.concat(parts)


def swap_summary(
    rec: Recommender,
    users: np.ndarray,
    k: int,
    settings: SwapSettings,
    *,
    seed: int = 0,
    categories: Mapping[str, Any] | None = None,
    n_boot: int = N_BOOT,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The swap report's numbers over the sampled ``users`` of the fitted ``rec`` (see the module docstring)
    and its details."""
    settings.check()
    start = time.perf_counter()
    model, data, loss = rec.model_, rec.data_, str(rec.train.get("loss", "softmax"))
    buckets, directions = typical_value_buckets(data), item_directions(model)
    items = top_items(model, data, users, k, rec.protocol_.exclude_seen, rec.device_)
    found, shard = {}, distributed.mine(len(users))
    for done, i in enumerate(shard):  # this process's users; each draws from its own stream (seed, user row)
        rng = np.random.default_rng([seed, int(users[i])])
        found[i] = user_swaps(model, data, int(users[i]), items[i], rng, buckets, settings, loss, directions)
        report(progress, "users", done + 1, len(shard))
    merged = distributed.in_order(found, len(users))  # every process's users, in order
    abs_sums, sums, pairs, tables = (list(column) for column in zip(*merged)) if merged else ([], [], [], [])
    if not sum(pairs):
        raise DataError("behavior swap: no sampled user has an event old enough (min_age) in the recent window")
    numbers = summarize(AttributionTable.concat(tables), data, categories, n_boot, seed)
    _swap_per_event(
        numbers, np.array(abs_sums), np.array(sums), np.array(pairs, np.float64), data.behaviors[1:], n_boot, seed
    )
    details = {
        **asdict(settings),
        "sampled_events": int(sum(len(np.unique(t.event)) for t in tables)),
        "pairs": int(sum(pairs)),
        "runtime_ms": (time.perf_counter() - start) * 1000,
        "per_event": "interventional: mean |s_j(behavior b) - s_j(event masked)|",
        "per_behavior_signed": "interventional: mean s_j(behavior b) - s_j(event masked)",
    }
    return numbers, details


def _swap_per_event(
    numbers: dict[str, Any],
    abs_sums: np.ndarray,
    sums: np.ndarray,
    pairs: np.ndarray,
    behaviors: list[str],
    n_boot: int,
    seed: int,
) -> None:
    """Set ``per_event`` and ``per_behavior_signed`` (and intervals) to the swap means over (e, j) pairs.

    ``abs_sums``, ``sums`` [U', B] per-user sums; ``pairs`` [U'] per-user (e, j) counts.
    """
    count = np.repeat(pairs[:, None], len(behaviors), 1)
    stats, boot = ratio_stats(abs_sums, sums, count), bootstrap(abs_sums, sums, count, n_boot, seed)
    for key, stat in (("per_event", "per_event"), ("per_behavior_signed", "signed")):
        numbers[key] = {b: float(stats[stat][g]) for g, b in enumerate(behaviors)}
        numbers["intervals"][key] = {b: [float(x) for x in boot[stat][g]] for g, b in enumerate(behaviors)}
