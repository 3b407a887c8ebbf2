"""Influence and counterfactual sets over a saved run: original user and item IDs, item categories and titles."""

from __future__ import annotations

from typing import Any

from core import schema as S
from core.explain.subject import titles_of
from core.explain.counterfactual import MAX_REMOVALS, CounterfactualSet, counterfactual_set
from core.explain.influence.report import InfluenceReport, global_influence
from core.explain.influence.table import Progress
from core.runs.records import load_run, run_record
from core.store.workspace import Workspace


def item_categories(ws: Workspace, dataset: str) -> dict[str, Any]:
    """{item ID: category} of a dataset's catalogue (empty when it has no categories)."""
    items = ws.items(dataset)
    if items.empty or S.ITEM_CATEGORY not in items:
        return {}
    return dict(zip(items[S.ITEM_ID].astype(str), items[S.ITEM_CATEGORY]))


def influence_run(ws: Workspace, run_id: str, users: int | None = 200, method: str = "loo", *, k: int = 10,
                  seed: int = 0, ablation: bool = True, progress: Progress | None = None,
                  **options: Any) -> InfluenceReport:
    """Global per-behavior influence of run ``run_id`` (see :mod:`core.explain.influence.report`)."""
    dataset = run_record(ws, run_id)["dataset"]
    rec = load_run(ws, run_id)
    return global_influence(rec, users, method, k=k, seed=seed, categories=item_categories(ws, dataset),
                            ablation=ablation, run=run_id, progress=progress, **options)


def counterfactual_run(ws: Workspace, run_id: str, user_id: str, item_id: str, k: int = 10,
                       max_removals: int = MAX_REMOVALS) -> CounterfactualSet:
    """The counterfactual set of ``item_id`` for the original ``user_id`` under run ``run_id``."""
    dataset = run_record(ws, run_id)["dataset"]
    stored = ws.resolve_user(dataset, user_id)
    rec = load_run(ws, run_id)
    return counterfactual_set(rec, stored, item_id, k, max_removals, titles=titles_of(ws.items(dataset)),
                              user_label=user_id, run=run_id)
