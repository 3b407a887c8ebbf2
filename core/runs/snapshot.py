"""What a training job's snapshot holds before its first progress event: shared by the job that trains
(:mod:`core.runs.jobs`) and what the pages read of it (:mod:`core.runs.watch`). No torch here."""

from __future__ import annotations

import time
from typing import Any

from core._checks import is_whole
from core.model.config import TrainConfig
from core.runs.records import RUNNING

STARTING = "starting"


def initial_snapshot(run_id: str, dataset: str, epochs: int) -> dict[str, Any]:
    """A job's state before its first progress event (the keys of ``TrainingJob.snapshot``)."""
    return {
        "status": RUNNING,
        "phase": STARTING,
        "run_id": run_id,
        "dataset": dataset,
        "encode_done": 0,
        "encode_total": 0,
        "epoch": 0,
        "epochs": epochs,
        "step": 0,
        "steps": 0,
        "fraction": 0.0,
        "loss": None,
        "history": [],
        "step_losses": [],
        "best_epoch": None,
        "privacy": None,  # a private run's epsilon spent, once it has ended (core.model.privacy)
        "error": None,
        "crash": None,
        "cancel_requested": False,
        "started_at": time.time(),
        "finished_at": None,
    }


def planned_epochs(settings: dict[str, Any]) -> int:
    """Epochs the settings ask for (the training default when they do not say)."""
    epochs = (settings.get("train") or {}).get("epochs", TrainConfig.epochs)
    return int(epochs) if is_whole(epochs) and epochs > 0 else 1
