"""Runs in the workspace: train a dataset into a run folder, resume, list, load, evaluate, recommend.

A run folder holds ``model.safetensors`` + ``config.json`` (the best model),
``metrics.json`` and, while training, ``train_state.safetensors`` +
``train_state.json`` so that an interrupted run resumes from its last epoch.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from core import schema as S
from core.store.files import finite_or_none, load_json, save_json
from core.errors import NotFoundError
from core.model.recommender import Recommender
from core.model.train_state import STATE_JSON, STATE_TENSORS, has_train_state, save_train_state
from core.model.training import FitState
from core.store.workspace import Workspace, validate_name

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"
METRIC_KEYS = ("HR@10", "NDCG@10", "MRR@10", "RMSE", "MAE", "AUC")


def new_run_id(dataset: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return validate_name(f"{dataset[:40]}-{stamp}-{secrets.token_hex(2)}", "run")


def _set_run(ws: Workspace, run_id: str, dataset: str, status: str, config: dict[str, Any],
             metrics: dict[str, Any] | None) -> None:
    with ws.connect() as con:
        con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
        con.execute(
            "INSERT INTO runs VALUES (?, ?, now()::TIMESTAMP, ?, ?, ?)",
            [run_id, dataset, status, json.dumps(config), None if metrics is None else json.dumps(metrics)],
        )


def train_run(ws: Workspace, dataset: str, settings: dict[str, Any], *, run_id: str | None = None,
              progress: Callable[[dict[str, Any]], None] | None = None,
              cancel: Callable[[], bool] | None = None, resume: bool = False) -> str:
    """Train ``dataset`` with ``settings`` (Recommender keyword arguments) into a run; its id.

    With ``resume`` the run's saved training state (if any) is loaded and training continues.
    """
    ws.dataset(dataset)
    run_id = run_id or new_run_id(dataset)
    folder = ws.run_dir(run_id)
    rec = Recommender.from_settings(settings)
    config = {"dataset": dataset, "settings": rec.get_settings()}
    _set_run(ws, run_id, dataset, RUNNING, config, None)
    try:
        save_json(folder / "run.json", {"run": run_id, **config})
        rec.fit(ws.events(dataset), ws.items(dataset), progress=progress, cancel=cancel,
                cache_dir=ws.cache_dir / "embeddings", on_epoch=lambda r, st, ep: _checkpoint(r, folder, st, ep),
                resume_from=folder if resume else None)
        metrics = _finish(rec, folder)
    except BaseException:
        _set_run(ws, run_id, dataset, FAILED, config, None)
        raise
    _set_run(ws, run_id, dataset, CANCELLED if rec.cancelled_ else DONE, config, metrics)
    return run_id


def _finish(rec: Recommender, folder: Path) -> dict[str, Any]:
    """Save the best model and its metrics; a finished run drops its training state."""
    rec.save(folder)
    if not rec.cancelled_:
        for name in (STATE_TENSORS, STATE_JSON):
            (folder / name).unlink(missing_ok=True)
    test = rec.evaluate("test")
    metrics = {"valid": _pick(rec.evaluate("valid")), "test": _pick(test), "protocol": test["label"],
               "best_epoch": rec.best_epoch_}
    save_json(folder / "metrics.json", finite_or_none({**metrics, "history": rec.history_}))
    return metrics


def resume_run(ws: Workspace, run_id: str, progress: Callable[[dict[str, Any]], None] | None = None,
               cancel: Callable[[], bool] | None = None) -> str:
    """Continue an interrupted or cancelled run from its last saved epoch."""
    record = run_record(ws, run_id)
    if not has_train_state(ws.run_dir(run_id)):
        raise NotFoundError(f"run {run_id!r} has no saved training state to resume from (status {record['status']})")
    settings = record["config"]["settings"]
    return train_run(ws, record["dataset"], settings, run_id=run_id, progress=progress, cancel=cancel, resume=True)


def _checkpoint(rec: Recommender, folder: Path, state: FitState, epoch: int) -> None:
    """After every epoch: the training state and the best model so far (a crash loses one epoch)."""
    save_train_state(folder, rec.model_, rec.optimizer_, rec.loss_fn_, state, epoch)
    current = {k: v.detach().clone() for k, v in rec.model_.state_dict().items()}
    if state.best_state is not None:
        rec.model_.load_state_dict(state.best_state)
    rec.history_, rec.best_epoch_ = state.history, state.best_epoch
    rec.save(folder)
    rec.model_.load_state_dict(current)
    save_json(folder / "progress.json", finite_or_none({"epoch": epoch, "best_epoch": state.best_epoch,
                                                        "history": state.history}))


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    """The reported metrics; NaN (e.g. RMSE where no held-out event has a value) becomes None."""
    out = {k: metrics.get(k) for k in METRIC_KEYS + ("coverage@10", "users")}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def list_runs(ws: Workspace) -> pd.DataFrame:
    """Saved runs, newest first, with their metrics flattened (test_*, valid_*)."""
    frame = ws.query("SELECT run_id, dataset, created_at, status, metrics FROM runs ORDER BY created_at DESC")
    rows = []
    for rec in frame.to_dict("records"):
        metrics = json.loads(rec.pop("metrics") or "{}")
        rec["protocol"] = metrics.get("protocol")
        for split in ("valid", "test"):
            for k, v in (metrics.get(split) or {}).items():
                rec[f"{split}_{k}"] = v
        rows.append(rec)
    return pd.DataFrame(rows)


def run_record(ws: Workspace, run_id: str) -> dict[str, Any]:
    frame = ws.query("SELECT run_id, dataset, status, config, metrics FROM runs WHERE run_id = ?", [run_id])
    if frame.empty:
        raise NotFoundError(f"no run {run_id!r} in workspace {ws.root}")
    row = frame.iloc[0].to_dict()
    row["config"] = json.loads(row["config"])
    row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else None
    return row


def load_run(ws: Workspace, run_id: str, device: str = "auto") -> Recommender:
    """The fitted recommender of a run, over its dataset's events."""
    record = run_record(ws, run_id)
    load_json(ws.run_dir(run_id) / "config.json")
    return Recommender.load(ws.run_dir(run_id), ws.events(record["dataset"]), device=device)


def evaluate_run(ws: Workspace, run_id: str, exclude_seen: bool | None = None,
                 target_behavior: str | None | type[Ellipsis] = ...) -> dict[str, Any]:
    """The ``behaviorlens evaluate`` object: run, protocol, exclude_seen, target_behavior, test, valid."""
    rec = load_run(ws, run_id)
    test = rec.evaluate("test", exclude_seen, target_behavior)
    valid = rec.evaluate("valid", exclude_seen, target_behavior)
    target = rec.protocol_.target_behavior if target_behavior is ... else target_behavior
    return {
        "run": run_id, "protocol": test["protocol"], "label": test["label"],
        "exclude_seen": rec.protocol_.exclude_seen if exclude_seen is None else bool(exclude_seen),
        "target_behavior": target, "test": _pick(test), "valid": _pick(valid),
    }


def recommend_run(ws: Workspace, run_id: str, user_id: str, k: int = 10) -> pd.DataFrame:
    """Top-k for an original (raw) user ID, with item titles and both head outputs."""
    record = run_record(ws, run_id)
    stored = ws.resolve_user(record["dataset"], user_id)
    rec = load_run(ws, run_id)
    top = rec.recommend(stored, k)
    items = ws.items(record["dataset"])[[S.ITEM_ID, S.ITEM_TITLE]]
    return top.merge(items, on=S.ITEM_ID, how="left")[[S.ITEM_ID, S.ITEM_TITLE, "engagement", "engagement_logit", "rating"]]
