"""Fusion over a saved run: cached candidates, named weight presets, fused evaluate and recommend.

Presets live in ``<run>/fusion_presets.json``: ``{"default": NAME, "presets": {NAME: weights}}``.
Saving a preset makes it the run's default: the weights the CLI (``evaluate``,
``recommend`` without ``--weights``), the Explain page and exports use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from core import schema as S
from core.store.files import load_json, save_json
from core.errors import DataError, NotFoundError
from core.model.evaluation import Protocol
from core.fusion.formula import SIGNALS, normalize_weights, parse_weights
from core.fusion.ranking import Candidates, fused_metrics, user_ranking
from core.fusion.candidates import FOLDER, FULL_ITEMS, PER_ANCHOR, build_candidates, read_cache, write_cache
from core.runs.records import load_run, run_record
from core.store.workspace import Workspace, validate_name

PRESETS_FILE = "fusion_presets.json"
Weights = dict[str, float]


# -- presets --------------------------------------------------------------------------------
def list_presets(ws: Workspace, run_id: str) -> dict[str, Any]:
    """``{"default": name or None, "presets": {name: normalized weights}}`` of a run."""
    run_record(ws, run_id)
    path = ws.run_dir(run_id) / PRESETS_FILE
    if not path.is_file():
        return {"default": None, "presets": {}}
    stored = load_json(path)
    return {"default": stored.get("default"), "presets": dict(stored.get("presets", {}))}


def save_preset(ws: Workspace, run_id: str, name: str, weights: dict[str, Any]) -> dict[str, Any]:
    """Store normalized ``weights`` under ``name`` and make it the run's default; the presets."""
    validate_name(name, "preset")
    weights = normalize_weights(weights)
    with ws.lock():
        current = list_presets(ws, run_id)
        current["presets"][name] = weights
        current["default"] = name
        save_json(ws.run_dir(run_id) / PRESETS_FILE, current)
    return current


def default_weights(ws: Workspace, run_id: str) -> tuple[str | None, Weights | None]:
    """(name, weights) of the run's default preset, or (None, None) when it has none."""
    presets = list_presets(ws, run_id)
    name = presets["default"]
    return (name, normalize_weights(presets["presets"][name])) if name in presets["presets"] else (None, None)


def resolve_weights(ws: Workspace, run_id: str, spec: str | None) -> tuple[str | None, Weights | None]:
    """``--weights`` value -> (preset name or None, weights): NAME=VALUE pairs, a preset name, or the default."""
    if spec is None:
        return default_weights(ws, run_id)
    if "=" in spec:
        return None, parse_weights(spec)
    presets = list_presets(ws, run_id)["presets"]
    if spec not in presets:
        raise DataError(f"--weights {spec!r}: not NAME=VALUE pairs and not a preset of run {run_id} "
                        f"(presets: {sorted(presets) or 'none'})")
    return spec, normalize_weights(presets[spec])


# -- cached candidates ----------------------------------------------------------------------
def _key(context: str, exclude_seen: bool, target: str | None) -> tuple[str, dict[str, Any]]:
    params = {"context": context, "exclude_seen": exclude_seen, "target_behavior": target,
              "per_anchor": PER_ANCHOR, "full_items": FULL_ITEMS}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"{context}-{digest}", params


def run_protocol(ws: Workspace, run_id: str, exclude_seen: bool | None = None,
                 target_behavior: str | None | type[Ellipsis] = ...) -> Protocol:
    """The run's protocol (from its config, no model loaded) with the given overrides."""
    run_record(ws, run_id)
    saved = load_json(ws.run_dir(run_id) / "config.json")["protocol"]
    return Protocol(bool(saved["exclude_seen"]) if exclude_seen is None else bool(exclude_seen),
                    saved["target_behavior"] if target_behavior is ... else target_behavior)


def run_candidates(ws: Workspace, run_id: str, context: str, exclude_seen: bool | None = None,
                   target_behavior: str | None | type[Ellipsis] = ...,
                   model: Callable[[], Any] | None = None) -> tuple[Candidates, dict[str, Any]]:
    """A run's cached candidates for ``context`` and their metadata (``cached``: read, not computed).

    Computed with the model, and stored, only when missing or stale (another model, protocol or format);
    ``model`` returns the run's fitted Recommender (default: load it).
    """
    protocol = run_protocol(ws, run_id, exclude_seen, target_behavior)
    folder = ws.run_dir(run_id)
    sha = load_json(folder / "config.json").get("weights_sha256")
    key, params = _key(context, protocol.exclude_seen, protocol.target_behavior)
    expect = {**params, "weights_sha256": sha}
    cached = read_cache(folder / FOLDER, key, expect)
    if cached is not None:
        return cached[0], {**cached[1], "cached": True}
    rec = model() if model is not None else load_run(ws, run_id)
    cands = build_candidates(rec, context, protocol.exclude_seen, protocol.target_behavior)
    meta = {**expect, "label": protocol.label, "protocol": protocol.name, "n_items": rec.data_.n_items,
            "user_ids": [str(u) for u in rec.data_.users[cands.users]]}
    write_cache(folder / FOLDER, key, cands, meta)
    return cands, {**meta, "cached": False}


# -- fused evaluate / recommend ---------------------------------------------------------------
def evaluate_fused(ws: Workspace, run_id: str, weights: dict[str, Any], exclude_seen: bool | None = None,
                   target_behavior: str | None | type[Ellipsis] = ..., preset: str | None = None) -> dict[str, Any]:
    """The ``behaviorlens evaluate`` object ranked by the fused score; ``weights`` repeats the normalized weights."""
    weights = normalize_weights(weights)
    protocol = run_protocol(ws, run_id, exclude_seen, target_behavior)
    out: dict[str, Any] = {"run": run_id, "protocol": protocol.name, "label": protocol.label,
                           "exclude_seen": protocol.exclude_seen, "target_behavior": protocol.target_behavior,
                           "weights": weights, "preset": preset}
    loaded: list[Any] = []

    def model() -> Any:  # loaded at most once, only when a cache is missing
        if not loaded:
            loaded.append(load_run(ws, run_id))
        return loaded[0]

    for split in ("test", "valid"):
        cands, _ = run_candidates(ws, run_id, split, protocol.exclude_seen, protocol.target_behavior, model)
        out[split] = _finite(fused_metrics(cands, weights))
    return out


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in metrics.items()}


def run_item_ids(ws: Workspace, run_id: str) -> np.ndarray:
    """[N+1] item IDs of a run's vocabulary; index 0 = padding ("")."""
    return np.asarray([""] + list(load_json(ws.run_dir(run_id) / "config.json")["vocab"]["items"]), dtype=object)


def recommend_fused(ws: Workspace, run_id: str, user_id: str, k: int, weights: dict[str, Any]) -> pd.DataFrame:
    """Top-k for an original user ID by fused score: item_id, title, score and every signal."""
    weights = normalize_weights(weights)
    record = run_record(ws, run_id)
    stored = ws.resolve_user(record["dataset"], user_id)
    cands, meta = run_candidates(ws, run_id, "all")
    users = meta["user_ids"]
    row = int(np.searchsorted(users, stored))
    if row >= len(users) or users[row] != stored:
        raise NotFoundError(f"user {user_id!r} is not in the data of run {run_id}")
    titles = ws.items(record["dataset"])[[S.ITEM_ID, S.ITEM_TITLE]]
    return recommendation_table(cands, row, k, weights, run_item_ids(ws, run_id), titles)


def recommendation_table(cands: Candidates, row: int, k: int, weights: Weights, item_ids: np.ndarray,
                         titles: pd.DataFrame) -> pd.DataFrame:
    """One user's fused top-k: item_id, title, score and every normalized signal."""
    ranked = user_ranking(cands, row, weights)
    frame = pd.DataFrame({S.ITEM_ID: item_ids[ranked["item"][:k]], "score": ranked["score"][:k],
                          **{s: ranked[s][:k] for s in SIGNALS}})
    frame = frame.merge(titles[[S.ITEM_ID, S.ITEM_TITLE]], on=S.ITEM_ID, how="left")
    return frame[[S.ITEM_ID, S.ITEM_TITLE, "score", *SIGNALS]]
