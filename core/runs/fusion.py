"""Fusion over a saved run: named weight presets, cached candidates, fused evaluate and recommend, a user's top-K.

Presets live in ``<run>/fusion_presets.json``: ``{"default": NAME, "presets": {NAME: weights}}``.
Saving a preset makes it the run's default: the weights the CLI (``evaluate``,
``recommend`` without ``--weights``), the Explain page and exports use. Candidates are
computed once per run, protocol and context, stored in the run folder (keyed by the
weights' checksum) and kept in the run handle's memo, so moving a weight re-ranks arrays.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from core import schema as S
from core._checks import check_whole, finite_or_none
from core.errors import DataError, NotFoundError
from core.fusion.cache import read_cache, write_cache
from core.fusion.candidates import FULL_ITEMS, PER_ANCHOR, build_candidates
from core.fusion.formula import ENGAGEMENT, SIGNALS, normalize_weights, parse_weights
from core.fusion.ranking import Candidates, fused_metrics, sweep, user_ranking
from core.model import distributed
from core.model.baselines import baseline_metrics
from core.model.held_out import read_held_out
from core.model.protocol import Protocol, TargetChoice
from core.runs.run import Run
from core.store.files import load_json, save_json
from core.store.run_folder import FUSION_FOLDER, PRESETS_FILE
from core.store.workspace import validate_name

Weights = dict[str, float]
ENGAGEMENT_ONLY: Weights = {ENGAGEMENT: 1.0}


# -- presets --------------------------------------------------------------------------------
def list_presets(run: Run) -> dict[str, Any]:
    """``{"default": name or None, "presets": {name: normalized weights}}`` of a run."""
    path = run.folder / PRESETS_FILE
    if not path.is_file():
        return {"default": None, "presets": {}}
    stored = load_json(path)
    return {"default": stored.get("default"), "presets": dict(stored.get("presets", {}))}


def save_preset(run: Run, name: str, weights: dict[str, Any]) -> dict[str, Any]:
    """Store normalized ``weights`` under ``name`` and make it the run's default; the presets."""
    validate_name(name, "preset")
    weights = normalize_weights(weights)
    with run.workspace.lock():
        current = list_presets(run)
        current["presets"][name] = weights
        current["default"] = name
        save_json(run.folder / PRESETS_FILE, current)
    return current


def default_weights(run: Run) -> tuple[str | None, Weights | None]:
    """(name, weights) of the run's default preset, or (None, None) when it has none."""
    presets = list_presets(run)
    name = presets["default"]
    return (name, normalize_weights(presets["presets"][name])) if name in presets["presets"] else (None, None)


def resolve_weights(run: Run, spec: str | None) -> tuple[str | None, Weights | None]:
    """``--weights`` value -> (preset name or None, weights): NAME=VALUE pairs, a preset name, or the default."""
    if spec is None:
        return default_weights(run)
    if "=" in spec:
        return None, parse_weights(spec)
    presets = list_presets(run)["presets"]
    if spec not in presets:
        raise DataError(
            f"--weights {spec!r}: not NAME=VALUE pairs and not a preset of run {run.id} "
            f"(presets: {sorted(presets) or 'none'})"
        )
    return spec, normalize_weights(presets[spec])


# -- cached candidates ----------------------------------------------------------------------
def _protocol(run: Run, exclude_seen: bool | None, target_behavior: TargetChoice, request_time: str | None) -> Protocol:
    """The run's protocol with the overrides, its label naming the share of items held out of training, if any."""
    held = read_held_out(run.config)
    return replace(run.protocol(exclude_seen, target_behavior, request_time), held_out_share=held.share if held else 0)


def _key(context: str, protocol: Protocol) -> tuple[str, dict[str, Any]]:
    params = {
        "context": context,
        "exclude_seen": protocol.exclude_seen,
        "target_behavior": protocol.target_behavior,
        "request_time": protocol.request_time,
        "per_anchor": PER_ANCHOR,
        "full_items": FULL_ITEMS,
    }
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"{context}-{digest}", params


def run_candidates(
    run: Run,
    context: str,
    exclude_seen: bool | None = None,
    target_behavior: TargetChoice = ...,
    request_time: str | None = None,
    rebuild: bool = False,
) -> tuple[Candidates, dict[str, Any]]:
    """A run's candidates for ``context`` and their metadata (``cached``: read from the run folder, not computed).

    Computed with the model, and stored, only when missing or stale (another model, protocol or format), or with
    ``rebuild``. In a sharded job every process computes its share; rank 0 alone stores them.
    """
    protocol = _protocol(run, exclude_seen, target_behavior, request_time)
    key, params = _key(context, protocol)
    expect = {**params, "weights_sha256": run.weights_digest}

    def compute() -> tuple[Candidates, dict[str, Any]]:
        cached = None if rebuild else read_cache(run.folder / FUSION_FOLDER, key, expect, per_row=("user_ids",))
        if cached is not None:
            return cached[0], {**cached[1], "cached": True}
        rec = run.recommender()
        cands = build_candidates(
            rec, context, protocol.exclude_seen, protocol.target_behavior, actual_time=protocol.actual_time
        )
        meta = {
            **expect,
            "label": protocol.label,
            "protocol": protocol.name,
            "n_items": rec.data_.n_items,
            "user_ids": [str(u) for u in rec.data_.users[cands.users]],
        }
        group = distributed.current()
        if group is None or group.leader:
            write_cache(run.folder / FUSION_FOLDER, key, cands, meta)
        return cands, {**meta, "cached": False}

    return compute() if rebuild else run.memo("candidates", key, compute)


def precompute_candidates(run: Run, contexts: tuple[str, ...], rebuild: bool = False) -> dict[str, Any]:
    """Build (or find) the run's cached candidates of each context: what the Fusion, Explain and Export pages then
    read without a forward pass. Per context: users, candidate columns, whether it was cached, seconds."""
    out = {}
    for context in contexts:
        started = time.perf_counter()
        cands, meta = run_candidates(run, context, rebuild=rebuild)
        out[context] = {
            "users": len(cands.users),
            "columns": int(cands.items.shape[1]),
            "items": meta["n_items"],
            "cached": meta["cached"],
            "protocol": meta["protocol"],
            "seconds": round(time.perf_counter() - started, 3),
        }
    return out


def run_baselines(run: Run) -> dict[str, Any]:
    """Popularity and recent items on the test split under the run's protocol (no model), once per run."""

    def compute() -> dict[str, Any]:
        rec = run.recommender()
        return baseline_metrics(rec.data_, rec.split_, rec.protocol_, "test")

    return run.memo("baselines", "test", compute)


def run_sweep(run: Run, step: float = 0.25) -> pd.DataFrame:
    """Test metrics of every weight setting on a ``step`` grid of the simplex (one row each), once per run."""
    return run.memo("sweep", step, lambda: pd.DataFrame(sweep(run_candidates(run, "test")[0], step)))


# -- fused evaluate / recommend ---------------------------------------------------------------
def evaluate_fused(
    run: Run,
    weights: dict[str, Any],
    exclude_seen: bool | None = None,
    target_behavior: TargetChoice = ...,
    preset: str | None = None,
    request_time: str | None = None,
) -> dict[str, Any]:
    """The ``behaviorlens evaluate`` object ranked by the fused score; ``weights`` repeats the normalized weights."""
    weights = normalize_weights(weights)
    protocol = _protocol(run, exclude_seen, target_behavior, request_time)
    out: dict[str, Any] = {
        "run": run.id,
        "protocol": protocol.name,
        "label": protocol.label,
        "request_time": protocol.request_time,
        "exclude_seen": protocol.exclude_seen,
        "target_behavior": protocol.target_behavior,
        "weights": weights,
        "preset": preset,
        "privacy": run.privacy,  # a private run's epsilon spent, else None
    }
    for split in ("test", "valid"):
        cands, _ = run_candidates(run, split, protocol.exclude_seen, protocol.target_behavior, protocol.request_time)
        out[split] = finite_or_none(fused_metrics(cands, weights))
    return out


def user_row(meta: dict[str, Any], stored: str, label: str, run: Run) -> int:
    """Row of a stored user ID in the candidates of context ``all``; NotFoundError naming ``label``."""
    users = meta["user_ids"]
    row = int(np.searchsorted(users, stored))
    if row >= len(users) or users[row] != stored:
        raise NotFoundError(f"user {label!r} is not in the data of run {run.id}")
    return row


def recommend_fused(run: Run, user_id: str, k: int, weights: dict[str, Any]) -> pd.DataFrame:
    """Top-k for an original user ID by fused score: item_id, title, score and every signal."""
    weights = normalize_weights(weights)
    stored = run.stored_user(user_id)
    cands, meta = run_candidates(run, "all")
    return recommendation_table(run, cands, user_row(meta, stored, user_id, run), k, weights)


def user_top(run: Run, user: str, k: int) -> tuple[pd.DataFrame, Weights, str | None]:
    """A stored user's top-k by fused score with the run's default weights (engagement alone without a preset):
    the table (rank, item_id, title, score, every signal), the weights and the preset's name."""
    name, weights = default_weights(run)
    weights = weights or dict(ENGAGEMENT_ONLY)
    cands, meta = run_candidates(run, "all")
    table = recommendation_table(run, cands, user_row(meta, user, user, run), check_whole("k", k, 1), weights)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table, weights, name


def recommendation_table(run: Run, cands: Candidates, row: int, k: int, weights: Weights) -> pd.DataFrame:
    """One user's fused top-k: item_id, title, score and every normalized signal."""
    ranked = user_ranking(cands, row, weights)
    frame = pd.DataFrame(
        {
            S.ITEM_ID: run.item_ids()[ranked["item"][:k]],
            "score": ranked["score"][:k],
            **{s: ranked[s][:k] for s in SIGNALS},
        }
    )
    frame = frame.merge(run.item_titles(), on=S.ITEM_ID, how="left")
    return frame[[S.ITEM_ID, S.ITEM_TITLE, "score", *SIGNALS]]
