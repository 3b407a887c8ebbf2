"""The thing being explained: one (user, item, target) of a fitted Recommender, ready for any method.

:func:`subject_for` resolves IDs, cuts the user's history (every event, up to the
model's ``max_len`` most recent) and builds the scorer; :func:`finish` turns a
method's raw attributions into an :class:`Explanation` with the score, the baseline
score and the faithfulness figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from core import schema as S
from core.data.batches import Batch
from core.data.sequences import SequenceData
from core.errors import DataError, NotFittedError, NotFoundError
from core.explain.explanation import TARGET_UNITS, TARGETS, EventAttribution, Explanation
from core.explain.faithfulness import N_RANDOM, faithfulness
from core.explain.fused import FusedSpec, engagement_reference, fused_spec, fused_target
from core.explain.scorer import EventScorer, HistoryScorer, engagement_target, rating_target, user_history
from core.model.network import BehaviorModel
from core.model.recommender import Recommender

Titles = Mapping[str, tuple[str | None, str | None]]  # item ID -> (title, item text)


@dataclass(frozen=True)
class Labels:
    """How a result names things: item titles and texts, the user ID shown (else the stored one), the run."""

    titles: Titles = field(default_factory=dict)
    user: str | None = None
    run: str | None = None


@dataclass
class Subject:
    """One (user, item, target) with its scorer and the explained events (oldest first)."""

    scorer: EventScorer
    user: str
    item: str
    target: str
    events: list[dict[str, Any]]  # EventAttribution fields except ``attribution``
    item_title: str | None = None
    run: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def history_scorer(subject: Subject) -> HistoryScorer:
    """The subject's scorer as a model's :class:`HistoryScorer` (what text tokens and counterfactuals need)."""
    if not isinstance(subject.scorer, HistoryScorer):
        raise DataError(f"this needs a fitted model's history scorer, not {type(subject.scorer).__name__}")
    return subject.scorer


def user_row(rec: Recommender, user: str, label: str | None = None) -> int:
    """Row of a stored user ID in the fitted data; NotFoundError (naming ``label``, else ``user``) when absent."""
    users = rec.data_.users
    pos = int(np.searchsorted(users, user))
    if pos >= len(users) or users[pos] != user:
        raise NotFoundError(f"user {label or user!r} is not in the data of this model")
    return pos


def item_index(rec: Recommender, item: str) -> int:
    """Index (1..N) of an original item ID in the fitted catalogue; NotFoundError when absent."""
    ids = rec.data_.item_ids
    pos = int(np.searchsorted(ids[1:], str(item))) + 1
    if pos >= len(ids) or ids[pos] != str(item):
        raise NotFoundError(f"item {item!r} is not in the model's catalogue ({len(ids) - 1} items)")
    return pos


def titles_of(items: pd.DataFrame | None) -> dict[str, tuple[str | None, str | None]]:
    """Workspace item frame -> {item ID: (title, item text)}."""
    if items is None or items.empty:
        return {}
    title = items[S.ITEM_TITLE] if S.ITEM_TITLE in items else pd.Series([None] * len(items))
    text = items[S.ITEM_TEXT] if S.ITEM_TEXT in items else pd.Series([None] * len(items))
    clean = [(None if pd.isna(a) else str(a), None if pd.isna(b) else str(b)) for a, b in zip(title, text)]
    return dict(zip(items[S.ITEM_ID].astype(str), clean))


def subject_for(
    rec: Recommender,
    user: str,
    item: str,
    target: str = "fused",
    *,
    weights: Mapping[str, float] | None = None,
    labels: Labels | None = None,
) -> Subject:
    """The subject of a fitted Recommender: stored ``user`` ID, original ``item`` ID, ``target``."""
    if target not in TARGETS:
        raise DataError(f"target {target!r}: expected one of {', '.join(TARGETS)}")
    if not hasattr(rec, "model_"):
        raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load() before explaining")
    labels = labels or Labels()
    row, idx = user_row(rec, user, labels.user), item_index(rec, item)
    model, data = rec.model_, rec.data_
    batch = user_history(data, row, model.cfg.max_len)
    details: dict[str, Any] = {
        "n_events": int(batch.item.shape[1]),
        "history_events": int(data.offsets[row + 1] - data.offsets[row]),
    }
    if target == "engagement":
        fn = engagement_target(model, idx, str(rec.train.get("loss", "softmax")))
    elif target == "rating":
        fn = rating_target(model, idx, rec.scale_)
    else:
        spec = fused_spec(data, row, idx, weights, rec.protocol_.exclude_seen)
        fn = fused_target(model, idx, rec.scale_, spec, full_history_reference(model, batch, spec))
        details["weights"] = spec.weights
    titles = labels.titles
    return Subject(
        HistoryScorer(model, batch, fn),
        labels.user or user,
        str(item),
        target,
        _event_rows(data, row, details["n_events"], titles),
        titles.get(str(item), (None, None))[0],
        labels.run,
        details,
    )


def full_history_reference(model: BehaviorModel, batch: Batch, spec: FusedSpec) -> tuple[float, float]:
    """The user's engagement scale (log p_max, low) with every event: held fixed while attributing."""
    model.eval()
    with torch.no_grad():
        task_e, _ = model(batch, last=True)
    return engagement_reference(model, task_e, spec.eligible)


def _event_rows(data: SequenceData, row: int, n: int, titles: Titles) -> list[dict[str, Any]]:
    """The last ``n`` events of user row ``row`` as EventAttribution fields (no attribution yet)."""
    end = int(data.offsets[row + 1])
    rows = []
    for pos, e in enumerate(range(end - n, end)):
        item_id = str(data.item_ids[data.item[e]])
        title, text = titles.get(item_id, (None, None))
        value = float(data.value[e])
        rows.append(
            {
                "position": pos,
                "behavior": str(data.behaviors[data.behavior[e]]),
                "item": item_id,
                "title": title,
                "item_text": text,
                "time": pd.Timestamp(int(data.ts[e]), unit="s", tz="UTC").isoformat().replace("+00:00", "Z"),
                "value": value if np.isfinite(value) else None,
            }
        )
    return rows


def finish(
    subject: Subject,
    method: str,
    values: np.ndarray,
    delta: float | None,
    runtime_ms: float,
    *,
    heuristic: bool = False,
    details: Mapping[str, Any] | None = None,
    n_random: int = N_RANDOM,
    seed: int = 0,
) -> Explanation:
    """Attributions [n] of ``subject`` -> Explanation, with deletion curves and AOPC (timed apart)."""
    values = np.asarray(values, dtype=np.float64)
    start = time.perf_counter()
    faith = faithfulness(subject.scorer, values, n_random, seed)
    faith_ms = (time.perf_counter() - start) * 1000
    events = [EventAttribution(**row, attribution=float(v)) for row, v in zip(subject.events, values)]
    return Explanation(
        user=subject.user,
        item=subject.item,
        target=subject.target,
        method=method,
        events=events,
        score=float(faith.curve[0]),
        baseline_score=float(faith.curve[-1]),
        completeness_delta=delta,
        runtime_ms=runtime_ms,
        aopc=faith.aopc,
        aopc_random=faith.aopc_random,
        heuristic=heuristic,
        item_title=subject.item_title,
        run=subject.run,
        units=TARGET_UNITS[subject.target],
        deletion_curve=faith.curve.tolist(),
        random_deletion_curve=faith.random_curve.tolist(),
        faithfulness_ms=faith_ms,
        details={**subject.details, **(details or {})},
    )
