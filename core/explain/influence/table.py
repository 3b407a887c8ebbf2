"""Per-(user, recommended item, event) attributions over a sample of users: the raw material of influence.

For each sampled user row u, the model's top-K items R(u) are ranked on the user's
whole history (the newest ``max_len`` events, as ``Recommender.recommend`` does; the
run's protocol decides whether earlier items are candidates). Every event e of that
window is then attributed, for every j in R(u), with respect to

    s_j(h) = log p(j | h)      (log_softmax over every item; log σ(logit) for a BCE head)

the engagement log-probability, by one of:

- ``loo``: a(u, j, e) = s_j(h) − s_j(h with e masked in place), one batched pass of n + 1
  histories per user that scores every j of R(u) at once;
- ``ig``: Integrated Gradients on the event tokens from the all-masked baseline, with
  Gauss–Legendre nodes; one forward pass for every j and one batched backward pass per
  j (vector-Jacobian products), so Σ_e a(u, j, e) = s_j(h) − s_j(all masked) up to the
  quadrature error (reported as the mean relative completeness delta).

The result is an :class:`AttributionTable` with one row per (u, j, e).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core._checks import check_whole
from core.data.sequences import SequenceData
from core.errors import DataError
from core.explain.scorer import HistoryScorer, TargetFn, user_history
from core.model import distributed
from core.model.config import SIGMOID_LOSSES
from core.model.evaluation import exclusion_mask, user_scores
from core.model.network import BehaviorModel
from core.progress import ProgressFn, report

ATTRIBUTION_METHODS = ("ig", "loo")
GLOBAL_IG_STEPS = 32  # Gauss–Legendre nodes; the mean relative completeness delta is reported


@dataclass
class AttributionTable:
    """One row per (user row, recommended item index, event index); every array is [R]."""

    user: np.ndarray  # int64 user row in the SequenceData
    item: np.ndarray  # int64 recommended item index (1..N)
    event: np.ndarray  # int64 absolute event index into the SequenceData arrays
    attribution: np.ndarray  # float64, in target units (log-probability)

    def subset(self, keep: np.ndarray) -> AttributionTable:
        """The rows where ``keep`` [R] is True."""
        return AttributionTable(self.user[keep], self.item[keep], self.event[keep], self.attribution[keep])

    @classmethod
    def concat(cls, parts: list[AttributionTable]) -> AttributionTable:
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, empty, np.zeros(0))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "event", "attribution")))


def sample_users(data: SequenceData, n: int | None, seed: int) -> np.ndarray:
    """``n`` distinct user rows with at least one event, drawn with ``seed`` (sorted); None = every user."""
    if n is not None:
        check_whole("users", n, 1)
    pool = np.flatnonzero(data.lengths() > 0)
    if n is None or n >= len(pool):
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))


def top_items(
    model: BehaviorModel, data: SequenceData, users: np.ndarray, k: int, exclude_seen: bool, device: torch.device
) -> list[np.ndarray]:
    """Each user's top-``k`` item indices on the full history (fewer when fewer items are candidates)."""
    check_whole("k", k, 1)
    ends = data.offsets[users + 1]
    scores, _ = user_scores(model, data, users, ends, device)  # [U, N+1]
    if exclude_seen:
        mask = exclusion_mask(data, users, ends)
        mask[:, 0] = True
        scores = np.where(mask, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [row[np.isfinite(s[row])] for row, s in zip(order, scores)]


def items_target(model: BehaviorModel, items: np.ndarray, loss: str = "softmax") -> TargetFn:
    """(task_e [S, De], task_r) -> s_j for every j of ``items``: [S, K]."""
    idx = torch.as_tensor(items, dtype=torch.long)

    def target(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
        logits = model.engagement_logits(task_e).float()  # [S, N+1]
        if loss in SIGMOID_LOSSES:
            return F.logsigmoid(logits[:, idx])
        logits = logits.masked_fill(torch.arange(logits.shape[1]) == 0, float("-inf"))
        return torch.log_softmax(logits, -1)[:, idx]

    return target


def loo_matrix(scorer: HistoryScorer) -> np.ndarray:
    """[K, n] s_j(h) − s_j(h with e masked), from one pass over n + 1 histories."""
    n = scorer.n_events
    removed = torch.cat([torch.zeros(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)])  # [n+1, n]
    scores = scorer.score_removed(removed).double().numpy()  # [n+1, K]
    return (scores[0][None, :] - scores[1:]).T


def ig_matrix(scorer: HistoryScorer, steps: int = GLOBAL_IG_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """([K, n] Integrated Gradients per item, [K] completeness delta Σ_e a − (s(x) − s(b)))."""
    x, b = scorer.tokens(), scorer.baseline_tokens()  # [1, n, D]
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alpha = torch.tensor((nodes + 1) / 2, dtype=x.dtype).view(-1, 1, 1)  # [S, 1, 1] in (0, 1)
    omega = torch.tensor(weights / 2, dtype=x.dtype)  # [S], sums to 1
    path = (b + alpha * (x - b)).detach().requires_grad_(True)  # [S, n, D]
    with torch.enable_grad():
        out = scorer.score_tokens(path)  # [S, K]
        objective = (omega[:, None] * out).sum(0)  # [K]
        grads = _per_output_grads(objective, path)  # [K, S, n, D]
    values = (grads.sum(1) * (x - b)).sum(-1).double()  # [K, n]
    with torch.no_grad():
        ends = scorer.score_tokens(torch.cat([x, b])).double()  # [2, K]
    delta = values.sum(1) - (ends[0] - ends[1])
    return values.numpy(), delta.numpy()


def _per_output_grads(objective: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """∂objective_k/∂path for every k: [K, *path.shape], one batched backward pass when torch allows it."""
    eye = torch.eye(objective.shape[0], dtype=objective.dtype)
    try:
        (grads,) = torch.autograd.grad(objective, path, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
        return grads
    except RuntimeError:  # an op without a batching rule: one backward pass per output
        return torch.stack(
            [torch.autograd.grad(objective[k], path, retain_graph=True)[0] for k in range(objective.shape[0])]
        )


def attribution_table(
    model: BehaviorModel,
    data: SequenceData,
    users: np.ndarray,
    items: list[np.ndarray],
    method: str = "loo",
    *,
    loss: str = "softmax",
    steps: int = GLOBAL_IG_STEPS,
    progress: ProgressFn | None = None,
) -> tuple[AttributionTable, dict[str, float | None]]:
    """Attributions of every (user, recommended item, event) by ``method``; details (runtime, IG deltas)."""
    if method not in ATTRIBUTION_METHODS:
        raise DataError(f"method {method!r}: expected one of {', '.join(ATTRIBUTION_METHODS)}")
    start, found, shard = time.perf_counter(), {}, distributed.mine(len(users))
    for done, i in enumerate(shard):  # this process's users (every one of them in a single process)
        u, rec_items = users[i], items[i]
        batch = user_history(data, int(u), model.cfg.max_len)
        part, rel_u = None, []
        if len(rec_items) and batch.item.shape[1]:
            scorer = HistoryScorer(model, batch, items_target(model, rec_items, loss))
            if method == "loo":
                values = loo_matrix(scorer)
            else:
                values, delta = ig_matrix(scorer, steps)
                gap = np.abs(values.sum(1) - delta)
                rel_u = list(np.abs(delta[gap > 0]) / gap[gap > 0])
            part = _rows(data, int(u), rec_items, values)
        found[i] = (part, rel_u)
        report(progress, "users", done + 1, len(shard))
    merged = distributed.in_order(found, len(users))  # every process's users, in order
    parts = [part for part, _ in merged if part is not None]
    rel = [r for _, rel_u in merged for r in rel_u]
    details: dict[str, float | None] = {"runtime_ms": (time.perf_counter() - start) * 1000}
    if method == "ig":
        details.update(steps=steps, mean_relative_delta=float(np.mean(rel)) if rel else None)
    return AttributionTable.concat(parts), details


def _rows(data: SequenceData, u: int, items: np.ndarray, values: np.ndarray) -> AttributionTable:
    """[K, n] attributions of user row ``u``'s newest n events -> table rows."""
    k, n = values.shape
    end = int(data.offsets[u + 1])
    events = np.arange(end - n, end, dtype=np.int64)
    return AttributionTable(
        np.full(k * n, u, np.int64),
        np.repeat(np.asarray(items, np.int64), n),
        np.tile(events, k),
        values.reshape(-1).astype(np.float64),
    )
