"""The ``fused`` target: the run's fused ranking score of one (user, item), as a torch function.

The formula and each signal are :mod:`core.fusion.formula`'s own functions, applied here to
torch tensors of one user so that the score is differentiable:

    fused(u, i) = w_e · (p_i/p_max − low) / (1 − low) + w_r · clip((r_i − lo)/(hi − lo), 0, 1)
                  + w_p · popularity_i + w_f · freshness_i

with p the softmax probabilities over every item, p_max and low = min p_c / p_max taken
over the user's eligible items (the run's protocol: earlier items of any behavior excluded or kept;
the explained item always counts), (lo, hi) the dataset's value range, and the item
signals of the ``all`` context (constants for one item: they cancel in every
attribution). For attribution the user's scale is held where the full history puts it:
p_max and low are computed once with every event (:func:`engagement_reference`) and kept
fixed while events are masked. Re-normalizing at every masked history would pin the
user's top item at exactly 1 whatever is removed (it stays on top), so every method would
attribute nothing to it, and the max/min kinks would break IG's completeness. With the
scale fixed the fused score equals core.fusion.formula's at the full history and moves with
p_i elsewhere. Weights are the run's default fusion preset; a run without one ranks by
engagement alone (as ``behaviorlens recommend`` does), so the fused target is then
engagement=1. ``tests/test_attribution.py`` checks this against ``core.fusion.formula``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from core.data.sequences import SequenceData
from core.explain.scorer import TargetFn
from core.fusion.candidates import item_signals
from core.fusion.formula import (
    ENGAGEMENT,
    FRESHNESS,
    POPULARITY,
    RATING,
    fuse,
    normalize_weights,
    scale_probability,
    scale_rating,
)
from core.model.evaluation import exclusion_mask
from core.model.network import BehaviorModel
from core.model.protocol import RatingScale

ENGAGEMENT_ONLY: dict[str, float] = {ENGAGEMENT: 1.0}


@dataclass(frozen=True)
class FusedSpec:
    """Everything the fused score of one (user, item) needs besides the model."""

    weights: dict[str, float]  # normalized over every signal
    eligible: torch.Tensor  # [N+1] bool candidate items of the user (padding never)
    value_range: tuple[float, float] | None
    item_constant: float  # w_p · popularity_i + w_f · freshness_i


def fused_spec(
    data: SequenceData, user: int, item: int, weights: Mapping[str, float] | None, exclude_seen: bool
) -> FusedSpec:
    """The fused-score settings of user row ``user`` and item index ``item`` (every event as history)."""
    w = normalize_weights(weights or ENGAGEMENT_ONLY)
    if exclude_seen:
        ends = data.offsets[user + 1 : user + 2]
        mask = exclusion_mask(data, np.array([user]), ends)[0]
        mask[item] = False  # the item explained is scored, even when the user met it before
    else:
        mask = np.zeros(data.n_items + 1, bool)
    mask[0] = True
    pop, fresh, _ = item_signals(data, None)  # the ``all`` context: every event
    constant = float(fuse({POPULARITY: pop[item], FRESHNESS: fresh[item]}, w))
    values = data.value[~np.isnan(data.value)]
    vrange = (float(values.min()), float(values.max())) if values.size else None
    return FusedSpec(w, torch.from_numpy(~mask), vrange, constant)


def fused_target(
    model: BehaviorModel, item: int, scale: RatingScale, spec: FusedSpec, reference: tuple[float, float] | None = None
) -> TargetFn:
    """(task_e [S, De], task_r [S, De+2]) -> fused score [S].

    ``reference`` = (log p_max, low) of the full history (:func:`engagement_reference`): the
    user's engagement scale held fixed; None re-normalizes every row (core.fusion.formula's view).
    """

    def fused(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
        signals: dict[str, torch.Tensor] = {}
        if spec.weights[ENGAGEMENT] > 0:
            signals[ENGAGEMENT] = (
                engagement_signal(model, task_e, item, spec.eligible)
                if reference is None
                else fixed_scale_signal(model, task_e, item, reference)
            )
        if spec.weights[RATING] > 0:
            idx = torch.full((task_r.shape[0],), item, dtype=torch.long)
            signals[RATING] = scale_rating(scale.restore(model.rating_of(task_r, idx).float()), spec.value_range)
        base = torch.full((task_e.shape[0],), spec.item_constant, dtype=torch.float32)
        return base + fuse(signals, spec.weights)

    return fused


def engagement_signal(model: BehaviorModel, task_e: torch.Tensor, item: int, eligible: torch.Tensor) -> torch.Tensor:
    """Min-maxed probability of ``item`` over the eligible items, (p_i/p_max − low)/(1 − low): [S].

    p_i/p_max = exp(logit_i − max logit): the softmax normalizer cancels.
    """
    logits = model.engagement_logits(task_e).float().masked_fill(~eligible, float("-inf"))  # [S, N+1]
    rel = torch.exp(logits - logits.max(-1, keepdim=True).values)  # p / p_max, 0 where not eligible
    low = torch.where(eligible, rel, torch.ones_like(rel)).min(-1).values  # [S]
    varies = low < 1.0  # else every eligible item is equally likely: the signal is 0
    safe_low = torch.where(varies, low, torch.zeros_like(low))  # no 0/0 in the branch torch.where drops
    return torch.where(varies, scale_probability(rel[:, item], safe_low), torch.zeros_like(low))


def log_probabilities(model: BehaviorModel, task_e: torch.Tensor) -> torch.Tensor:
    """[S, De] -> log-softmax over every item [S, N+1] (padding -inf)."""
    logits = model.engagement_logits(task_e).float()
    logits[:, 0] = float("-inf")
    return torch.log_softmax(logits, -1)


@torch.no_grad()
def engagement_reference(model: BehaviorModel, task_e: torch.Tensor, eligible: torch.Tensor) -> tuple[float, float]:
    """(log p_max, low) of one full-history state [1, De] over the eligible items."""
    logp = log_probabilities(model, task_e)[0].masked_fill(~eligible, float("-inf"))  # [N+1]
    top = float(logp.max())
    low = float(torch.exp(logp[eligible] - top).min()) if bool(eligible.any()) else 0.0
    return top, low


def fixed_scale_signal(
    model: BehaviorModel, task_e: torch.Tensor, item: int, reference: tuple[float, float]
) -> torch.Tensor:
    """(p_i / p_max* − low*) / (1 − low*) with p_max*, low* of the full history: [S]."""
    top, low = reference
    rel = torch.exp(log_probabilities(model, task_e)[:, item] - top)  # [S]
    return scale_probability(rel, low) if low < 1.0 else torch.zeros_like(rel)
