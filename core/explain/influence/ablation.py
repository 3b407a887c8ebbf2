"""Behavior ablation: what the ranking metrics lose when the model never sees one behavior type.

Estimand. For each behavior b, every event of type b is removed from every history
(masked in place with the model's mask token, as during training's event dropout;
no other event moves) and the held-out split is re-scored under the run's own
protocol (full ranking; earlier items of any behavior excluded or kept as the run was evaluated; the
candidate set is that of the full history, so only the model's scores change):

    Δ metric(b) = metric(histories without b) − metric(full histories)

for HR@10, NDCG@10 (higher is better: a drop is negative) and RMSE (lower is better:
a loss is positive). The targets themselves are never removed. ``removed_events``
counts the history events of type b inside the model's window that were masked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from core._checks import finite_or_none
from core.data.batches import history_batch
from core.data.sequences import SequenceData
from core.errors import DataError, NotFittedError
from core.model import distributed
from core.model import metrics as M
from core.model.evaluation import K, exclusion_mask
from core.model.network import BehaviorModel
from core.model.recommender import Recommender
from core.progress import ProgressFn, report

ScoreFn = Callable[[int | None], tuple[np.ndarray, np.ndarray, int]]  # code -> scores [U, N+1], values [U], removed
METRICS = ("HR@10", "NDCG@10", "RMSE")


@dataclass
class AblationResult:
    """Metrics with every behavior present (``baseline``) and with each one removed, and their deltas."""

    protocol: str
    split: str
    users: int
    baseline: dict[str, float]
    metrics: dict[str, dict[str, float]]  # behavior -> metrics without it
    deltas: dict[str, dict[str, float]]  # behavior -> {metric: Δ, "removed_events": n}
    runtime_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return finite_or_none(asdict(self))


def split_metrics(
    scores: np.ndarray,
    predicted: np.ndarray,
    targets: np.ndarray,
    truth: np.ndarray,
    exclude: np.ndarray | None,
    k: int = K,
) -> dict[str, float]:
    """HR@k, NDCG@k (full ranking of ``targets`` [U] in ``scores`` [U, N+1]) and RMSE of ``predicted`` [U]."""
    ranks = M.rank_of_targets(scores, targets, exclude)
    out = {f"HR@{k}": M.hit_rate_at_k(ranks, k), f"NDCG@{k}": M.ndcg_at_k(ranks, k)}
    has = ~np.isnan(truth)
    out["RMSE"] = M.rmse(truth[has], predicted[has]) if has.any() else float("nan")
    return out


def ablate(
    score_fn: ScoreFn,
    behaviors: list[str],
    targets: np.ndarray,
    truth: np.ndarray,
    exclude: np.ndarray | None,
    k: int = K,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(baseline, metrics without each behavior, deltas); ``behaviors[c - 1]`` is the name of code c."""
    scores, predicted, _ = score_fn(None)
    baseline = split_metrics(scores, predicted, targets, truth, exclude, k)
    found, shard = {}, distributed.mine(len(behaviors))
    for done, c in enumerate(shard):  # this process's behaviors (every one in a single process)
        scores, predicted, removed = score_fn(c + 1)
        found[c] = (split_metrics(scores, predicted, targets, truth, exclude, k), removed)
        report(progress, "behaviors", done + 1, len(shard))
    metrics, deltas = {}, {}
    for name, (m, removed) in zip(behaviors, distributed.in_order(found, len(behaviors))):
        metrics[name] = m
        deltas[name] = {key: m[key] - baseline[key] for key in baseline}
        deltas[name]["removed_events"] = removed
    return baseline, metrics, deltas


def model_score_fn(
    model: BehaviorModel,
    data: SequenceData,
    users: np.ndarray,
    ends: np.ndarray,
    targets: np.ndarray,
    scale: Any,
    device: torch.device,
    batch_size: int = 256,
    actual_time: bool = False,
) -> ScoreFn:
    """``ScoreFn`` of a BehaviorModel: log-probabilities, predicted target values, removed count."""

    @torch.inference_mode()
    def score(code: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        model.eval()
        scores, values, removed_total = [], [], 0
        for lo in range(0, len(users), batch_size):
            sl = slice(lo, lo + batch_size)
            batch = history_batch(data, users[sl], ends[sl], model.cfg.max_len, actual_time).to(device)
            removed = None if code is None else (batch.behavior == code) & batch.mask  # [B, L]
            removed_total += 0 if removed is None else int(removed.sum())
            task_e, task_r = model(batch, removed, last=True)
            logits = model.engagement_logits(task_e).float()
            logits[:, 0] = float("-inf")
            scores.append(torch.log_softmax(logits, -1).cpu().numpy())
            idx = torch.as_tensor(targets[sl], dtype=torch.long, device=device)
            values.append(np.asarray(scale.restore(model.rating_of(task_r, idx).float().cpu().numpy())))
        return np.concatenate(scores), np.concatenate(values), removed_total

    return score


def behavior_ablation(rec: Recommender, which: str = "test", progress: ProgressFn | None = None) -> AblationResult:
    """Remove each behavior type from every history of the fitted ``rec`` and re-evaluate ``which``."""
    if not hasattr(rec, "model_"):
        raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load() first")
    if which not in ("valid", "test"):
        raise DataError(f"which={which!r}: expected valid or test")
    start = time.perf_counter()
    data, split = rec.data_, rec.split_
    pos = split.valid_pos if which == "valid" else split.test_pos
    users, targets = split.users, data.item[pos]
    exclude = exclusion_mask(data, users, pos) if rec.protocol_.exclude_seen else None
    score_fn = model_score_fn(
        rec.model_, data, users, pos, targets, rec.scale_, rec.device_, actual_time=rec.protocol_.actual_time
    )
    baseline, metrics, deltas = ablate(
        score_fn, list(data.behaviors[1:]), targets, data.value[pos], exclude, progress=progress
    )
    return AblationResult(
        protocol=rec.protocol_.label,
        split=which,
        users=int(len(users)),
        baseline=baseline,
        metrics=metrics,
        deltas=deltas,
        runtime_ms=(time.perf_counter() - start) * 1000,
    )
