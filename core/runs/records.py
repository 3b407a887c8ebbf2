"""The runs table of the workspace: run IDs, statuses, settings and metrics, one row per run.

Every status change goes through :func:`set_run`; a run's files live in its folder
(:mod:`core.store.run_folder`). A run stored ``running`` whose owner process is gone
(:mod:`core.runs.owner`) reads ``interrupted`` in :func:`list_runs` and :func:`run_record`: the
status is derived on read, so a read never writes and never shows a dead run as running.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from core._checks import finite_or_none
from core.errors import NotFoundError
from core.runs.owner import owner_alive
from core.store.workspace import Workspace, validate_name

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"
INTERRUPTED = "interrupted"  # stored running, but the process that trained it is gone: resumable
PICKABLE = (DONE, CANCELLED)  # statuses of runs with a saved model
METRIC_KEYS = ("HR@10", "NDCG@10", "MRR@10", "RMSE", "MAE", "AUC")


def new_run_id(dataset: str) -> str:
    """``<dataset>-<UTC time>-<4 hex digits>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return validate_name(f"{dataset[:40]}-{stamp}-{secrets.token_hex(2)}", "run")


def set_run(
    ws: Workspace, run_id: str, dataset: str, status: str, config: dict[str, Any], metrics: dict[str, Any] | None
) -> None:
    """Write (replace) the run's row; ``created_at`` stays the time the run was first recorded."""
    with ws.connect() as con:
        row = con.execute("SELECT created_at FROM runs WHERE run_id = ?", [run_id]).fetchone()
        con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
        con.execute(
            "INSERT INTO runs VALUES (?, ?, coalesce(?, now()::TIMESTAMP), ?, ?, ?)",
            [
                run_id,
                dataset,
                None if row is None else row[0],
                status,
                json.dumps(config),
                None if metrics is None else json.dumps(metrics),
            ],
        )


def delete_record(ws: Workspace, run_id: str) -> None:
    """Remove the run's row (its folder is the caller's: :func:`core.runs.lifecycle.delete_run`)."""
    with ws.connect() as con:
        con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM run_marks WHERE run_id = ?", [run_id])


BASELINE_KEYS = ("HR@10", "NDCG@10")
NEW_ITEMS_BARS = ("popularity", "random")  # the bars listed beside a run's new-items figures


def pick_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The reported metrics of an evaluation; NaN (e.g. RMSE where no held-out event has a value) becomes None."""
    return finite_or_none({k: metrics.get(k) for k in METRIC_KEYS + ("coverage@10", "users")})


def list_runs(ws: Workspace) -> pd.DataFrame:
    """Saved runs, newest first, with their metrics flattened (test_*, valid_*; a run trained with items held out
    of training: new_items_protocol, its label, and new_items_*, its new-items figures and bars)."""
    frame = ws.query(
        "SELECT r.run_id, r.dataset, r.created_at, r.status, m.mark, "
        "json_extract_string(r.config, '$.parent') AS parent, r.metrics FROM runs r "
        "LEFT JOIN run_marks m ON m.run_id = r.run_id ORDER BY r.created_at DESC"
    )
    rows = []
    for rec in frame.to_dict("records"):
        metrics = _json_or_none(rec.pop("metrics")) or {}
        rec["status"] = effective_status(ws, rec["run_id"], rec["status"])
        rec["mark"] = rec["mark"] if isinstance(rec["mark"], str) else None  # e.g. trained on data since deleted
        rec["parent"] = rec["parent"] if isinstance(rec["parent"], str) else None  # the run an update started from
        rec["protocol"] = metrics.get("protocol")
        rec["dp_epsilon"] = (metrics.get("privacy") or {}).get("epsilon")  # None: trained without DP
        for split in ("valid", "test"):
            for k, v in (metrics.get(split) or {}).items():
                rec[f"{split}_{k}"] = v
        for name, values in ((metrics.get("baselines") or {}).get("test") or {}).items():
            for k in BASELINE_KEYS:  # the bars beside the model, same split and protocol (None: not applicable)
                rec[f"test_{name}_{k}"] = (values or {}).get(k)
        new = metrics.get("new_items")  # trained with items held out: each user's last event on one of them
        if new:
            rec["new_items_protocol"] = new.get("label")
            for k in BASELINE_KEYS:
                rec[f"new_items_{k}"] = (new.get("test") or {}).get(k)
                for name in NEW_ITEMS_BARS:
                    rec[f"new_items_{name}_{k}"] = ((new.get("baselines") or {}).get(name) or {}).get(k)
        rows.append(rec)
    return pd.DataFrame(rows)


def usable_runs(ws: Workspace, dataset: str | None = None) -> list[str]:
    """IDs of the runs with a saved model (done or cancelled), newest first; of one dataset when given."""
    runs = list_runs(ws)
    if runs.empty:
        return []
    keep = runs["status"].isin(PICKABLE)
    if dataset is not None:
        keep &= runs["dataset"] == dataset
    return runs.loc[keep, "run_id"].tolist()


def run_record(ws: Workspace, run_id: str) -> dict[str, Any]:
    """One run's row: run_id, dataset, status (as it reads: see :func:`effective_status`), mark (None, or such as
    "trained on data since deleted": :mod:`core.runs.forget`), config (dict) and metrics (dict or None)."""
    frame = ws.query(
        "SELECT r.run_id, r.dataset, r.status, m.mark, r.config, r.metrics FROM runs r "
        "LEFT JOIN run_marks m ON m.run_id = r.run_id WHERE r.run_id = ?",
        [run_id],
    )
    if frame.empty:
        raise NotFoundError(f"no run {run_id!r} in workspace {ws.root}")
    row = frame.iloc[0].to_dict()
    row["status"] = effective_status(ws, run_id, row["status"])
    row["mark"] = row["mark"] if isinstance(row["mark"], str) else None
    row["config"] = json.loads(row["config"])
    row["metrics"] = _json_or_none(row["metrics"])
    return row


def effective_status(ws: Workspace, run_id: str, stored: str) -> str:
    """How a stored status reads: ``running`` whose owner is gone (or whose owner record is unreadable, so
    that nothing vouches for a live process) is ``interrupted``; any other status is itself."""
    if stored == RUNNING and not owner_alive(ws.run_dir(run_id)):
        return INTERRUPTED
    return stored


def _json_or_none(value: Any) -> Any:
    """A stored JSON column: a missing value comes back from DuckDB as None, or as NaN through pandas 3."""
    return json.loads(value) if isinstance(value, str) and value else None
