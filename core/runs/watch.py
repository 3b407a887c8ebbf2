"""What the pages show of a training: a worker's live snapshot, a dataset's training state, progress in words.

Everything here is read from the workspace (the run's row, as :func:`~core.runs.records.run_record`
reads it, and the files of its folder), never from the memory of the process that trains it: a page
shows the same whichever process or server started the run. A run whose owner is gone reads
``interrupted``. Importing this module does not import torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runs.background import BACKGROUND_FILE, DEMO_LABEL, LOG_FILE
from core.runs.lifecycle import CANCEL_FILE, LIVE_FILE
from core.runs.owner import owner_alive
from core.runs.records import DONE, FAILED, INTERRUPTED, RUNNING, list_runs, run_record
from core.runs.snapshot import STARTING, initial_snapshot, planned_epochs
from core.store.files import load_json
from core.store.run_folder import PROGRESS_FILE, STATE_JSON, STATE_TENSORS
from core.store.workspace import Workspace


@dataclass(frozen=True)
class Training:
    """A run of a dataset being trained (``running``), whose process is gone (``interrupted``), or whose worker
    ``failed``; ``progress`` holds the keys of :func:`live_snapshot` that a page shows; ``demo``: the run
    ``behaviorlens sample --train`` started; ``background``: trained by a worker."""

    run_id: str
    dataset: str
    status: str
    background: bool
    log: Path | None
    progress: dict[str, Any] = field(default_factory=dict)
    demo: bool = False


def has_checkpoint(ws: Workspace, run_id: str) -> bool:
    """Whether the run has a saved training state to resume from (else a resume starts from scratch)."""
    folder = ws.run_dir(run_id)
    tensors = [folder / STATE_TENSORS, folder / (STATE_TENSORS + ".pending")]  # core.model.train_state
    return (folder / STATE_JSON).is_file() and any(t.is_file() for t in tensors)


def live_snapshot(ws: Workspace, run_id: str) -> dict[str, Any]:
    """What a worker last published of ``run_id`` (the keys of :meth:`TrainingJob.snapshot`), its status as the
    run's record reads when the worker is gone without saying how it ended (``interrupted`` when killed)."""
    record = run_record(ws, run_id)
    folder = ws.run_dir(run_id)
    snap = initial_snapshot(run_id, record["dataset"], planned_epochs(record["config"].get("settings") or {}))
    if (folder / LIVE_FILE).is_file():
        snap.update(load_json(folder / LIVE_FILE))
    if snap["status"] == RUNNING and record["status"] != RUNNING and not owner_alive(folder):
        snap.update(status=record["status"], phase=record["status"], finished_at=snap.get("at") or time.time())
        if record["status"] == DONE:
            snap["fraction"] = 1.0
            snap["best_epoch"] = (record["metrics"] or {}).get("best_epoch", snap["best_epoch"])
    snap["privacy"] = (record["metrics"] or {}).get("privacy")
    if snap["status"] == RUNNING and (folder / CANCEL_FILE).is_file():
        snap["cancel_requested"] = True
    snap["elapsed"] = (snap["finished_at"] or time.time()) - snap["started_at"]
    return snap


# -- a dataset's training, for the analysis pages -----------------------------------------------------------
def training_state(ws: Workspace, dataset: str) -> Training | None:
    """The dataset's newest running run, else its newest run when that one is interrupted or failed in a
    worker; None when neither (the caller checks first that no run is usable)."""
    runs = list_runs(ws)
    ours = runs[runs["dataset"] == dataset].to_dict("records") if len(runs) else []
    for rec in ours:
        if rec["status"] == RUNNING:
            return _training(ws, rec["run_id"], dataset, RUNNING)
    if ours and ours[0]["status"] == INTERRUPTED:
        return _training(ws, ours[0]["run_id"], dataset, INTERRUPTED)
    if ours and ours[0]["status"] == FAILED and (ws.run_dir(ours[0]["run_id"]) / BACKGROUND_FILE).is_file():
        return _training(ws, ours[0]["run_id"], dataset, FAILED)
    return None


def _training(ws: Workspace, run_id: str, dataset: str, status: str) -> Training:
    folder = ws.run_dir(run_id)
    marker = folder / BACKGROUND_FILE
    demo = marker.is_file() and load_json(marker).get("label") == DEMO_LABEL
    log = folder / LOG_FILE
    progress = _progress(ws, run_id)
    return Training(run_id, dataset, status, marker.is_file(), log if log.is_file() else None, progress, demo)


def _progress(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's live progress (a worker's), else its epoch progress (every run), else a start."""
    folder = ws.run_dir(run_id)
    if (folder / LIVE_FILE).is_file():
        return load_json(folder / LIVE_FILE)
    epochs = planned_epochs(run_record(ws, run_id)["config"].get("settings") or {})
    epoch = int(load_json(folder / PROGRESS_FILE)["epoch"]) if (folder / PROGRESS_FILE).is_file() else 0
    phase = "training" if epoch else STARTING
    return {"status": RUNNING, "phase": phase, "epoch": epoch, "epochs": epochs, "fraction": min(1.0, epoch / epochs)}


def progress_text(progress: dict[str, Any]) -> tuple[float, str]:
    """(fraction in [0, 1], words) of a run's progress, as the Train page's bar says it."""
    phase, epoch, epochs = progress.get("phase"), progress.get("epoch") or 0, progress.get("epochs") or 0
    if phase in (None, STARTING):
        return 0.0, "Loading the data and the text encoder…"
    if phase == "encoding":
        done, total = progress.get("encode_done") or 0, progress.get("encode_total") or 0
        return (done / total if total else 0.0), f"Encoding the item texts: {done:,} of {total:,}"
    fraction = float(progress.get("fraction") or 0.0)
    if phase == "training" and progress.get("steps"):
        return fraction, f"Epoch {epoch} of {epochs} (step {progress.get('step')} of {progress['steps']})"
    if phase == "training":
        return fraction, f"Epoch {epoch} of {epochs} done"
    return fraction, f"Epoch {epoch} of {epochs}: evaluating and saving the model…"
