"""BehaviorLens: understand how user behavior drives recommendations.

The curated public API, for scripts and notebooks::

    import core
    from core.ingest.pipeline import ingest

    ws = core.Workspace("workspace")
    ingest(ws, "events.csv", options=core.IngestOptions(name="shop"))
    run = core.open_run(ws, core.train_run(ws, "shop", {"train": {"epochs": 5}}))
    core.evaluate_run(run)["test"]
    core.explain_run(run, "U0001", "I0042", method="ig").to_dict()

Names resolve on first use, so ``import core`` stays light (no torch, no streamlit); every
module under ``core`` can still be imported directly. A name never shadows a package of
``core`` (``core.ingest`` and ``core.explain`` are packages: their functions of the same name
are ``core.ingest.pipeline.ingest`` and ``core.explain.explain``). ``tests/test_api.py`` pins this list.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# OpenMP threads that finish a parallel region wait passively instead of spinning. The model's
# operations are small, so an active wait burned as much system CPU time as the work itself, and
# a second process or thread (the dashboard, a benchmark) made spinning threads thrash. The
# variable is read once, when torch loads its OpenMP runtime: it must be set before torch is
# imported, which every entry point does through ``core``. An explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS: dict[str, str] = {
    # errors
    "BehaviorLensError": "core.errors",
    "DataError": "core.errors",
    "UnusableFileError": "core.errors",
    "NotFittedError": "core.errors",
    "ArtifactError": "core.errors",
    "WorkspaceError": "core.errors",
    "NotFoundError": "core.errors",
    # storage and ingestion
    "Workspace": "core.store.workspace",
    "IngestOptions": "core.ingest.options",
    "inspect": "core.ingest.pipeline",
    "IngestReport": "core.ingest.report",
    "ensure_sample_dataset": "core.ingest.sample",
    # data
    "SynthConfig": "core.data.synth",
    "generate": "core.data.synth",
    # the model
    "Recommender": "core.model.recommender",
    "Settings": "core.model.config",
    "ModelConfig": "core.model.config",
    "TrainConfig": "core.model.config",
    # fusion
    "SIGNALS": "core.fusion.formula",
    "normalize_weights": "core.fusion.formula",
    "parse_weights": "core.fusion.formula",
    # explanations of a fitted Recommender
    "Explanation": "core.explain.explanation",
    "Labels": "core.explain.subject",
    "summarize": "core.explain.summary",
    "counterfactual_set": "core.explain.counterfactual",
    "token_attributions": "core.explain.tokens",
    "InfluenceReport": "core.explain.influence.report",
    "InfluenceSettings": "core.explain.influence.report",
    "global_influence": "core.explain.influence.report",
    "behavior_ablation": "core.explain.influence.ablation",
    # saved runs
    "Run": "core.runs.run",
    "open_run": "core.runs.run",
    "list_runs": "core.runs.records",
    "train_run": "core.runs.train",
    "resume_run": "core.runs.train",
    "evaluate_run": "core.runs.scores",
    "recommend_run": "core.runs.scores",
    "evaluate_fused": "core.runs.fusion",
    "recommend_fused": "core.runs.fusion",
    "list_presets": "core.runs.fusion",
    "save_preset": "core.runs.fusion",
    "explain_run": "core.runs.explain",
    "counterfactual_run": "core.runs.explain",
    "token_attributions_run": "core.runs.explain",
    "influence_run": "core.runs.influence",
    # exports
    "attributions_csv": "core.views.report",
    "influence_csv": "core.views.report",
    "html_report": "core.views.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
