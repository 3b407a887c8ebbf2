"""Explanations over a saved run: original user and item IDs, titles, the run's fusion weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.explain import explain
from core.explain.explanation import Explanation
from core.explain.subject import titles_of
from core.runs.records import load_run, run_record
from core.store.workspace import Workspace


def explain_run(ws: Workspace, run_id: str, user_id: str, item_id: str, method: str = "ig", target: str = "fused",
                weights: Mapping[str, float] | None = None, **options: Any) -> Explanation:
    """Explain ``item_id`` for the original ``user_id`` under run ``run_id``.

    ``weights``: fusion weights of the ``fused`` target; None = the run's default preset
    (engagement alone when it has none).
    """
    record = run_record(ws, run_id)
    dataset = record["dataset"]
    stored = ws.resolve_user(dataset, user_id)
    if weights is None and target == "fused":
        from core.runs.fusion import default_weights  # only the fused target needs the run's presets

        _, weights = default_weights(ws, run_id)
    rec = load_run(ws, run_id)
    return explain(rec, stored, item_id, method, target, weights=weights, titles=titles_of(ws.items(dataset)),
                   user_label=user_id, run=run_id, **options)
