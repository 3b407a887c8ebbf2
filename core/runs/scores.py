"""The model's own scores over a saved run: ``behaviorlens evaluate`` and ``recommend`` without fusion weights."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core import schema as S
from core.model.protocol import TargetChoice, resolve_target
from core.runs.records import pick_metrics
from core.runs.run import Run


def evaluate_run(
    run: Run, exclude_seen: bool | None = None, target_behavior: TargetChoice = ..., request_time: str | None = None
) -> dict[str, Any]:
    """The ``behaviorlens evaluate`` object: run, protocol, label, request_time, exclude_seen, target_behavior,
    test, valid, baselines, privacy (a private run's epsilon spent, else None)."""
    rec = run.recommender()
    test = rec.evaluate("test", exclude_seen, target_behavior, request_time=request_time)
    valid = rec.evaluate("valid", exclude_seen, target_behavior, request_time=request_time)
    target = resolve_target(target_behavior, rec.protocol_.target_behavior)
    return {
        "run": run.id,
        "protocol": test["protocol"],
        "label": test["label"],
        "request_time": test["request_time"],
        "exclude_seen": rec.protocol_.exclude_seen if exclude_seen is None else bool(exclude_seen),
        "target_behavior": target,
        "test": pick_metrics(test),
        "valid": pick_metrics(valid),
        "baselines": {"test": test["baselines"], "valid": valid["baselines"]},
        "privacy": run.privacy,
    }


def recommend_run(run: Run, user_id: str, k: int = 10) -> pd.DataFrame:
    """Top-k for an original (raw) user ID, with item titles and both head outputs."""
    top = run.recommender().recommend(run.stored_user(user_id), k)
    return top.merge(run.item_titles(), on=S.ITEM_ID, how="left")[
        [S.ITEM_ID, S.ITEM_TITLE, "engagement", "engagement_logit", "rating"]
    ]
