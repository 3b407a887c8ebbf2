"""TrainingJob: :func:`core.runs.train.train_run` in a background thread, observed through snapshots.

The worker process of :mod:`core.runs.background` trains its run through one job and publishes
its snapshots (the Train page runs every training in such a worker: seeds, random state and
torch's thread count are process-wide, so two jobs of one process would not reproduce). In a
script, :func:`start` assigns the run ID up front, starts a daemon thread and registers the
job under that ID in a process-wide registry; :func:`get_job` finds it again.

The thread writes progress events into the job under a lock; :meth:`TrainingJob.snapshot`
copies them out under the same lock, so a reader never sees a half-updated
state. :meth:`TrainingJob.cancel` sets a :class:`threading.Event` that the
training loop reads before every step (``cancel`` hook of ``train_run``); the
run is then saved and recorded as cancelled.

Errors: a :class:`~core.errors.BehaviorLensError` (bad setting, missing
dataset, unreadable encoder...) ends the job as ``failed`` with its message in
``error``. Any other exception is a bug: the job is ``failed`` with the
exception's type and message in ``crash``, and the exception is re-raised in
the thread, so ``threading.excepthook`` reports it with its traceback.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import types
from typing import Any

import torch

from core.errors import BehaviorLensError
from core.runs.records import CANCELLED, DONE, FAILED, RUNNING, new_run_id, run_record
from core.runs.snapshot import initial_snapshot, planned_epochs
from core.runs.train import train_run
from core.store.workspace import Workspace

ENCODING, TRAINING, FINISHING = "encoding", "training", "finishing"
MAX_STEP_POINTS = 5_000  # per-step losses kept for the live curve (oldest dropped first)


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used for training in this process."""
    return bool(torch.cuda.is_available())


class TrainingJob:
    """One training run in a background thread. Use :func:`start` to create and run one.

    Attributes:
        run_id: the run's ID in the workspace, known before the thread starts.
        dataset: the dataset it trains on.
        settings: the ``Recommender`` keyword arguments it trains with.
        resume: continue the run from its last checkpoint (from scratch when it has none).
        parent: the run an update starts from (``train --from``), or None.
    """

    def __init__(
        self,
        ws_root: str,
        dataset: str,
        settings: dict[str, Any],
        run_id: str | None = None,
        resume: bool = False,
        parent: str | None = None,
    ) -> None:
        self.ws_root = str(ws_root)
        self.resume, self.parent = bool(resume), parent
        self.dataset = dataset
        self.settings = copy.deepcopy(settings)
        self.run_id = run_id or new_run_id(dataset)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = initial_snapshot(self.run_id, dataset, planned_epochs(settings))

    # -- control -------------------------------------------------------------------
    def run_in_thread(self) -> TrainingJob:
        """Start the background thread (once)."""
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=f"train-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the training loop to stop before its next step; the run is saved as cancelled."""
        self._cancel.set()
        with self._lock:
            self._state["cancel_requested"] = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; whether it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.is_running()

    def is_running(self) -> bool:
        with self._lock:
            return self._state["status"] == RUNNING

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the job's state (safe to keep and to change).

        Keys: ``status`` (running | done | cancelled | failed), ``phase`` (starting |
        encoding | training | finishing, while running), ``run_id``, ``dataset``,
        ``encode_done``/``encode_total`` (distinct item texts), ``epoch`` (current,
        1-based), ``epochs`` (planned), ``step``/``steps`` (within the epoch),
        ``fraction`` (0..1 of the planned training), ``loss`` (last step's),
        ``history`` (one record per finished epoch), ``step_losses`` (``[x, loss]``
        with x in epochs), ``best_epoch``, ``error`` (a project error's message),
        ``crash`` (type and message of an unexpected exception), ``cancel_requested``,
        ``elapsed`` (seconds).
        """
        with self._lock:
            snap = copy.deepcopy(self._state)
        snap["elapsed"] = (snap["finished_at"] or time.time()) - snap["started_at"]
        return snap

    # -- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            train_run(
                Workspace(self.ws_root),
                self.dataset,
                self.settings,
                run_id=self.run_id,
                progress=self._on_progress,
                cancel=self._cancel.is_set,
                resume=self.resume,
                parent=self.parent,
            )
        except BehaviorLensError as exc:
            self._finish(FAILED, error=str(exc))
            return
        except BaseException as exc:
            self._finish(FAILED, crash=f"{type(exc).__name__}: {exc}")
            raise
        try:
            status = run_record(Workspace(self.ws_root), self.run_id)["status"]
        except BehaviorLensError as exc:
            self._finish(FAILED, error=str(exc))
            return
        except BaseException as exc:
            self._finish(FAILED, crash=f"{type(exc).__name__}: {exc}")
            raise
        self._finish(status if status in (DONE, CANCELLED) else DONE)

    def _on_progress(self, event: dict[str, Any]) -> None:
        """The ``progress`` callback of ``train_run``: fold one event into the state."""
        kind = event.get("event")
        with self._lock:
            state = self._state
            if kind == "encode":
                state["phase"] = ENCODING
                state["encode_done"], state["encode_total"] = int(event["done"]), int(event["total"])
            elif kind == "step":
                state["phase"] = TRAINING
                for key in ("epoch", "step", "steps"):
                    state[key] = int(event[key])
                state["loss"] = float(event["loss"])
                x = state["epoch"] - 1 + state["step"] / max(state["steps"], 1)
                state["step_losses"].append([x, state["loss"]])
                del state["step_losses"][:-MAX_STEP_POINTS]
                state["fraction"] = _fraction(x, state["epochs"])
            elif kind == "epoch":
                record = {k: v for k, v in event.items() if k != "event"}
                state["history"].append(record)
                state["epoch"], state["best_epoch"] = int(event["epoch"]), event.get("best_epoch")
                state["fraction"] = _fraction(float(event["epoch"]), state["epochs"])
                if state["epoch"] >= state["epochs"]:
                    state["phase"] = FINISHING
            elif kind == "rating_refit":  # after the main loop: the rating head's own selection
                state["phase"] = FINISHING
                state["rating_refit"] = {k: v for k, v in event.items() if k != "event"}

    def _finish(self, status: str, error: str | None = None, crash: str | None = None) -> None:
        with self._lock:
            self._state.update(status=status, phase=status, error=error, crash=crash, finished_at=time.time())
            if status == DONE:
                self._state["fraction"] = 1.0


def _fraction(epochs_done: float, epochs: int) -> float:
    return min(1.0, max(0.0, epochs_done / max(epochs, 1)))


# -- the registry ----------------------------------------------------------------------
# The registry must outlive a re-import of this module: Streamlit's file watcher
# evicts every module under the app folder from ``sys.modules`` when one of
# their files changes, and a fresh module-level dict would lose the running
# jobs (their threads go on, but no page could find or cancel them). So it lives
# in a file-less module of its own, under a name outside ``core.``.
_REGISTRY_MODULE = "_behaviorlens_training_jobs"


def _registry() -> types.ModuleType:
    module = types.ModuleType(_REGISTRY_MODULE, "Process-wide registry of core.runs.jobs jobs.")
    module.jobs, module.lock = {}, threading.Lock()  # type: ignore[attr-defined]
    return sys.modules.setdefault(_REGISTRY_MODULE, module)


_REG = _registry()
_JOBS: dict[str, TrainingJob] = _REG.jobs
_JOBS_LOCK: threading.Lock = _REG.lock


def start(ws_root: str, dataset: str, settings: dict[str, Any]) -> TrainingJob:
    """Start training ``dataset`` with ``settings`` in a background thread; the registered job.

    Raises:
        DataError: when no run ID can be made from the dataset name.
    """
    job = TrainingJob(ws_root, dataset, settings)
    with _JOBS_LOCK:
        _JOBS[job.run_id] = job
    return job.run_in_thread()


def get_job(run_id: str | None) -> TrainingJob | None:
    """The job started in this process under ``run_id``, if any."""
    if run_id is None:
        return None
    with _JOBS_LOCK:
        return _JOBS.get(run_id)


def running_jobs() -> list[TrainingJob]:
    """Jobs of this process still training."""
    with _JOBS_LOCK:
        jobs = list(_JOBS.values())
    return [job for job in jobs if job.is_running()]
