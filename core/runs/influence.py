"""Influence and ablation over a saved run: the dataset's item categories, results kept per run and settings."""

from __future__ import annotations

from typing import Any

from core import schema as S
from core.explain.influence.ablation import AblationResult, behavior_ablation
from core.explain.influence.report import InfluenceReport, InfluenceSettings, global_influence
from core.progress import ProgressFn
from core.runs.run import Run


def item_categories(run: Run) -> dict[str, Any]:
    """{item ID: category} of the run's dataset (empty when it has no categories)."""

    def read() -> dict[str, Any]:
        items = run.items()
        if items.empty or S.ITEM_CATEGORY not in items:
            return {}
        return dict(zip(items[S.ITEM_ID].astype(str), items[S.ITEM_CATEGORY]))

    return run.memo("default", ("categories",), read)


def influence_run(
    run: Run,
    users: int | None = 200,
    method: str = "loo",
    *,
    k: int = 10,
    seed: int = 0,
    ablation: bool = True,
    progress: ProgressFn | None = None,
    **options: Any,
) -> InfluenceReport:
    """Global per-behavior influence of the run (see :mod:`core.explain.influence.report`); with ``ablation``,
    the behavior ablation of its test split too. ``options``: ``n_boot``, ``min_age`` and the method's own."""
    fields = {name: options.pop(name) for name in ("n_boot", "min_age") if name in options}
    settings = InfluenceSettings(users, method, k=k, seed=seed, **fields)
    return global_influence(
        run.recommender(),
        settings,
        categories=item_categories(run),
        ablation=ablation,
        run=run.id,
        progress=progress,
        **options,
    )


def kept_influence(
    run: Run, settings: InfluenceSettings, progress: ProgressFn | None = None, compute: bool = True
) -> InfluenceReport | None:
    """The run's global influence under ``settings``, without the ablation, computed once per run and
    settings; ``compute=False``: the kept report or None."""

    def run_it() -> InfluenceReport:
        return global_influence(
            run.recommender(), settings, categories=item_categories(run), ablation=False, run=run.id, progress=progress
        )

    return run.memo("influence", settings, run_it if compute else None)


def kept_ablation(run: Run, progress: ProgressFn | None = None, compute: bool = True) -> AblationResult | None:
    """The run's behavior ablation on its test split, computed once per run; ``compute=False``: kept or None."""

    def run_it() -> AblationResult:
        return behavior_ablation(run.recommender(), "test", progress=progress)

    return run.memo("ablation", "test", run_it if compute else None)
