"""The global influence report of a fitted model: per-behavior influence over a sample of users.

:func:`global_influence` attributes each sampled user's recommended items to their events
(leave-one-out or Integrated Gradients, :mod:`core.explain.influence.table`) or intervenes on
their behaviors (:mod:`core.explain.influence.swap`), then summarizes by behavior, time gap and
category with bootstrap intervals (the estimands are defined in
:mod:`core.explain.influence.estimands`). ``model_weights`` (not an attribution) reads the
behavior memory's own weight of one event of each behavior at a few ages.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core._checks import check_whole, finite_or_none
from core.data.sequences import SequenceData
from core.errors import DataError, NotFittedError
from core.explain.influence.estimands import MIN_AGE, N_BOOT, summarize
from core.explain.influence.swap import SwapSettings, swap_summary, typical_value_buckets
from core.explain.influence.table import attribution_table, sample_users, top_items
from core.model.network import BehaviorModel
from core.model.recommender import Recommender
from core.progress import ProgressFn

METHODS = ("loo", "ig", "swap")
MEMORY_AGES: tuple[tuple[str, int], ...] = (
    ("10 min", 600),
    ("12 h", 43_200),
    ("3 d", 259_200),
    ("14 d", 1_209_600),
)  # ages at which model_weights are read


@dataclass
class InfluenceReport:
    """Global per-behavior influence of one model over a sample of users (see the module docstring)."""

    method: str
    target: str
    users: int
    k: int
    seed: int
    protocol: str
    per_behavior_share: dict[str, float]
    per_event: dict[str, float]
    per_behavior_signed: dict[str, float]
    intervals: dict[str, dict[str, list[float | None]]]  # statistic -> behavior -> [low, high]
    events: dict[str, int]  # behavior -> attributed (item, event) rows
    events_settled: dict[str, int]  # behavior -> rows counted by per_event (events at least min_age old)
    by_time_gap: dict[str, dict[str, float]]
    by_category: dict[str, dict[str, float]]
    ablation: dict[str, dict[str, float]] | None = None  # behavior -> metric deltas (core.explain.influence.ablation)
    # behavior -> {age -> the behavior memory's learned weight of one such event} (None: no memory)
    model_weights: dict[str, dict[str, float]] | None = None
    ablation_baseline: dict[str, float] | None = None
    runtime_ms: float = 0.0
    run: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON-ready dict (NaN -> None)."""
        return finite_or_none(asdict(self))


@dataclass(frozen=True)
class InfluenceSettings:
    """What one global influence computation measures (hashable: results are kept by it).

    ``users`` sampled users (seeded; None = every user) and their top-``k`` items; ``method`` ``loo`` or
    ``ig`` (attributions) or ``swap`` (:mod:`core.explain.influence.swap`); ``n_boot`` bootstrap resamples;
    ``min_age`` seconds an event must be older than its user's newest event to count in ``per_event`` /
    ``per_behavior_signed`` (and to be sampled by the swap; 0 counts every event).
    """

    users: int | None = 200
    method: str = "loo"
    k: int = 10
    seed: int = 0
    n_boot: int = N_BOOT
    min_age: int = MIN_AGE


def global_influence(
    rec: Recommender,
    settings: InfluenceSettings | None = None,
    *,
    categories: Mapping[str, Any] | None = None,
    ablation: bool = True,
    run: str | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> InfluenceReport:
    """Per-behavior influence of the fitted ``rec`` under ``settings``; see the module doc.

    ``options`` go to the method (``steps`` for IG; ``events_per_user``, ``recent``, ``similar`` for the
    swap). ``ablation`` adds the behavior ablation of :mod:`core.explain.influence.ablation` over the
    run's test split.
    """
    s = settings or InfluenceSettings()
    users, method, k, seed, n_boot, min_age = s.users, s.method, s.k, s.seed, s.n_boot, s.min_age
    _check(rec, method, min_age)
    start = time.perf_counter()
    data, model, loss = rec.data_, rec.model_, str(rec.train.get("loss", "softmax"))
    rows = sample_users(data, users, seed)
    if method == "swap":
        numbers, details = swap_summary(
            rec,
            rows,
            k,
            SwapSettings(min_age=min_age, **options),
            seed=seed,
            categories=categories,
            n_boot=n_boot,
            progress=progress,
        )
    else:
        items = top_items(model, data, rows, k, rec.protocol_.exclude_seen, rec.device_)
        table, details = attribution_table(model, data, rows, items, method, loss=loss, progress=progress, **options)
        numbers = summarize(table, data, categories, n_boot, seed, min_age)
    report = InfluenceReport(
        method=method,
        target="engagement",
        users=len(rows),
        k=k,
        seed=seed,
        protocol=rec.protocol_.label,
        run=run,
        details={**details, "min_age": min_age},
        model_weights=memory_weights(model, data),
        **numbers,
    )
    if ablation:
        from core.explain.influence.ablation import behavior_ablation

        abl = behavior_ablation(rec)
        report.ablation, report.ablation_baseline = abl.deltas, abl.baseline
        report.details["ablation_ms"] = abl.runtime_ms
    report.runtime_ms = (time.perf_counter() - start) * 1000
    return report


def memory_weights(model: BehaviorModel, data: SequenceData) -> dict[str, dict[str, float]] | None:
    """The model's own weight of one event of each behavior at ``MEMORY_AGES`` (None without a memory).

    The behavior memory adds w(behavior, value, age) * V(token - mask token) per event (see
    ``core.model.network.BehaviorMemory``); w is read at each behavior's most common value. The weights
    compare behaviors and ages within one model; their scale is the model's own.
    """
    if model.memory is None:
        return None
    codes = torch.arange(1, len(data.behaviors))
    values = torch.as_tensor(typical_value_buckets(data)[1:])
    ages = torch.tensor([seconds for _, seconds in MEMORY_AGES])
    table = model.memory.table(codes, values, ages).cpu().double().numpy()
    return {
        b: {label: float(table[i, a]) for a, (label, _) in enumerate(MEMORY_AGES)}
        for i, b in enumerate(data.behaviors[1:])
    }


def _check(rec: Recommender, method: str, min_age: Any) -> None:
    """DataError for an unknown method or a bad min_age; NotFittedError for an unfitted recommender."""
    if method not in METHODS:
        raise DataError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    check_whole("min_age", min_age, 0, unit="seconds")
    if not hasattr(rec, "model_"):
        raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load() first")
