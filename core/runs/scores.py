"""The model's own scores over a saved run: ``behaviorlens evaluate`` and ``recommend`` without fusion weights."""

from __future__ import annotations

from typing import Any

import pandas as pd

from core import schema as S
from core.errors import DataError
from core.model.held_out import HELD_OUT_KEY
from core.model.metrics import FULL_PROTOCOL
from core.model.new_items import evaluate_new_items
from core.model.protocol import NEW_ITEMS, PROTOCOLS, STANDIN, TargetChoice, resolve_target
from core.model.recommender import Recommender
from core.runs.records import BASELINE_KEYS, pick_metrics
from core.runs.run import Run


def evaluate_run(
    run: Run,
    exclude_seen: bool | None = None,
    target_behavior: TargetChoice = ...,
    request_time: str | None = None,
    protocol: str = FULL_PROTOCOL,
) -> dict[str, Any]:
    """The ``behaviorlens evaluate`` object: run, protocol, label, request_time, exclude_seen, target_behavior,
    test, valid, baselines, privacy (a private run's epsilon spent, else None).

    ``protocol="new-items"``: each user's last event on an item held out of training (:mod:`core.model.new_items`);
    the object then also has ``users`` and ``held_out_items``, ``test`` and ``baselines.test`` its figures
    (with ``random`` beside popularity and recent items) and ``valid`` None: no validation event is held out."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)} (the default: {FULL_PROTOCOL})")
    if protocol == NEW_ITEMS:
        return _new_items_run(run, exclude_seen, target_behavior, request_time)
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


def trained_evaluation(run: Run) -> dict[str, Any]:
    """:func:`evaluate_run`'s object under the run's own protocol, from the figures its training saved
    (``metrics.json``: the same evaluation, made once); evaluated afresh for a run saved without all of them."""
    saved = run.metrics or {}
    keys = (
        "protocol_name",
        "protocol",
        "request_time",
        "exclude_seen",
        "target_behavior",
        "test",
        "valid",
        "baselines",
    )
    if not all(k in saved for k in keys):
        return evaluate_run(run)
    return {
        "run": run.id,
        "protocol": saved["protocol_name"],
        "label": saved["protocol"],  # metrics.json names the label "protocol"
        **{k: saved[k] for k in keys[2:]},
        "privacy": run.privacy,
    }


def recommend_run(run: Run, user_id: str, k: int = 10) -> pd.DataFrame:
    """Top-k for an original (raw) user ID, with item titles and both head outputs."""
    top = run.recommender().recommend(run.stored_user(user_id), k)
    return top.merge(run.item_titles(), on=S.ITEM_ID, how="left")[
        [S.ITEM_ID, S.ITEM_TITLE, "engagement", "engagement_logit", "rating"]
    ]


def new_items_figures(rec: Recommender, exclude_seen: bool | None = None, target: TargetChoice = ...) -> dict[str, Any]:
    """A fitted recommender's new-items evaluation (see :func:`~core.model.new_items.evaluate_new_items`), by its
    own protocol unless overridden; the recommender must have been trained with held-out items."""
    if rec.held_out_ is None or rec.every_ is None:
        raise DataError("the model was trained without held-out items: the new-items protocol needs cold_items > 0")
    exclude = rec.protocol_.exclude_seen if exclude_seen is None else bool(exclude_seen)
    target_behavior = resolve_target(target, rec.protocol_.target_behavior)
    return evaluate_new_items(rec.fitted(), rec.every_, rec.held_out_, exclude, target_behavior)


def new_items_summary(out: dict[str, Any]) -> dict[str, Any]:
    """What a run's ``metrics.json`` keeps of a new-items evaluation (``new_items``): label, counts, the model's
    metrics and the bars beside it (popularity, recent items, random)."""
    return {
        "protocol": out["protocol"],
        "label": out["label"],
        "users": out["users"],
        "held_out_items": out["held_out_items"],
        "held_out_share": out["held_out_share"],
        "test": pick_metrics(out),
        "baselines": out["baselines"],
    }


def _new_items_run(
    run: Run, exclude_seen: bool | None, target_behavior: TargetChoice, request_time: str | None
) -> dict[str, Any]:
    """``evaluate --protocol new-items``: refused for a run trained without held-out items, naming the flag."""
    if request_time not in (None, STANDIN):
        raise DataError(
            f"--request-time {request_time} with --protocol new-items: the new-items protocol asks every held-out "
            "event at the stand-in time; leave --request-time out"
        )
    if not (run.config.get(HELD_OUT_KEY) or {}).get("items"):
        raise DataError(
            f"run {run.id} was trained without held-out items, so --protocol new-items has nothing to score: "
            f"train a run with some, e.g. `behaviorlens train --dataset {run.dataset} --cold-items 0.1` "
            '(or "cold_items": 0.1 in the --config JSON, or the held-out share on the Train page)'
        )
    rec = run.recommender()
    out = new_items_figures(rec, exclude_seen, target_behavior)
    summary = new_items_summary(out)
    return {
        "run": run.id,
        "protocol": out["protocol"],
        "label": out["label"],
        "request_time": out["request_time"],
        "exclude_seen": rec.protocol_.exclude_seen if exclude_seen is None else bool(exclude_seen),
        "target_behavior": resolve_target(target_behavior, rec.protocol_.target_behavior),
        "test": summary["test"],
        "valid": None,  # nothing of the held-out items is validated on
        "baselines": {"test": out["baselines"], "valid": None},
        "privacy": run.privacy,
        "users": summary["users"],
        "held_out_items": summary["held_out_items"],
        "held_out_share": summary["held_out_share"],
    }


def bars_line(baselines: dict[str, Any]) -> str:
    """The bars beside a model as one line of text: ``popularity HR@10 0.0100 NDCG@10 0.0042; random ...``."""
    parts = []
    for name, values in baselines.items():
        if values is not None:
            parts.append(
                f"{name} " + " ".join(f"{k} {values[k]:.4f}" for k in BASELINE_KEYS if values.get(k) is not None)
            )
    return "; ".join(parts)
