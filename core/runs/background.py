"""Training in a detached background process: what ``behaviorlens sample --train`` (``make demo``) starts.

:func:`ensure_training` records a new run as ``running`` (so every page and a second call find it
at once), then starts ``python -m core.cli train-background --run ID`` in a session of its own, its
output going to ``train.log`` in the run folder, and returns: the process outlives the command that
started it. It starts nothing when the dataset has a usable run (done or cancelled) or a live
running one. The process (:func:`train_recorded`) trains the run with the settings recorded for it
through a :class:`~core.runs.jobs.TrainingJob` and rewrites ``live.json`` (encoding, epoch, step)
every second; SIGTERM cancels it (the model so far is saved, the run recorded as cancelled).

``background.json`` (pid, log) marks a run started here: once its process is gone while the run
is still recorded running (killed, machine restarted), the run is ``stopped`` and the next
:func:`ensure_training` records it as failed and starts a new one. A running run started
elsewhere (the Train page, ``behaviorlens train``) is trusted to be alive.

Importing this module does not import torch: only :func:`train_recorded` does.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core._checks import finite_or_none
from core.errors import BehaviorLensError, DataError
from core.model.config import TrainConfig, check_settings
from core.runs.records import FAILED, PICKABLE, RUNNING, list_runs, new_run_id, run_record, set_run
from core.store.files import load_json, save_json
from core.store.run_folder import PROGRESS_FILE
from core.store.workspace import Workspace

DEMO_CONFIG_ENV = "BEHAVIORLENS_DEMO_CONFIG"  # a JSON settings file (as `train --config`) for the demo run
DEMO_EPOCHS = 6  # the default model; valid NDCG@10 within 0.001 of epoch 8 on the sample; ~3 min on 2 idle cores
DEMO_SETTINGS: dict[str, Any] = {"device": "auto", "train": {"epochs": DEMO_EPOCHS}}
WORKER_COMMAND = "train-background"  # the hidden CLI command the process runs
BACKGROUND_FILE, LIVE_FILE, LOG_FILE = "background.json", "live.json", "train.log"
LIVE_SECONDS = 1.0
STOPPED = "stopped"  # recorded running, but its background process is gone
_LIVE_KEYS = ("status", "phase", "encode_done", "encode_total", "epoch", "epochs", "step", "steps", "fraction")
_REPO = Path(__file__).resolve().parents[2]  # the folder that holds the ``core`` package
_STARTED: list[subprocess.Popen[bytes]] = []  # this process's children: kept (no ResourceWarning) until reaped


@dataclass(frozen=True)
class Launch:
    """What :func:`ensure_training` did: ``started`` a new run, or found ``run_id`` (``status``) there."""

    run_id: str
    dataset: str
    started: bool
    status: str
    log: Path | None


@dataclass(frozen=True)
class Training:
    """A run of a dataset being trained (``running``), whose process is gone (``stopped``), or that ``failed``
    in the background; ``progress`` holds the keys of :meth:`TrainingJob.snapshot` that a page shows."""

    run_id: str
    dataset: str
    status: str
    background: bool
    log: Path | None
    progress: dict[str, Any] = field(default_factory=dict)


def demo_settings() -> dict[str, Any]:
    """The demo run's settings: the file named by ``BEHAVIORLENS_DEMO_CONFIG``, else :data:`DEMO_SETTINGS`."""
    path = os.environ.get(DEMO_CONFIG_ENV)
    if not path:
        return copy.deepcopy(DEMO_SETTINGS)
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{DEMO_CONFIG_ENV}={path}: no such file; name a JSON settings file as `train --config` takes")
    try:
        settings = load_json(file)
        check_settings(settings)
    except BehaviorLensError as exc:
        raise DataError(f"{DEMO_CONFIG_ENV}={path}: {exc}") from exc
    return settings


def ensure_training(ws: Workspace, dataset: str, settings: dict[str, Any], label: str = "demo") -> Launch:
    """Start training ``dataset`` in a background process unless it has a usable or a live running run.

    The new run's ID is ``<dataset>-<label>-<time>-<hex>``; a stopped run is recorded as failed first.
    """
    ws.dataset(dataset)  # NotFoundError for a dataset that is not there
    check_settings(settings)
    with ws.lock():  # a second call waits, then finds the run recorded
        runs = list_runs(ws)
        ours = runs[runs["dataset"] == dataset] if len(runs) else runs
        for rec in ours.to_dict("records"):
            if rec["status"] in PICKABLE:
                return Launch(rec["run_id"], dataset, False, rec["status"], _log_of(ws, rec["run_id"]))
        for run_id in ours.loc[ours["status"] == RUNNING, "run_id"].tolist() if len(ours) else []:
            if _alive(ws, run_id):
                return Launch(run_id, dataset, False, RUNNING, _log_of(ws, run_id))
            record = run_record(ws, run_id)
            set_run(ws, run_id, dataset, FAILED, record["config"], None)
        run_id = new_run_id(f"{dataset[:30]}-{label}")
        config = {"dataset": dataset, "settings": settings, "background": True}
        set_run(ws, run_id, dataset, RUNNING, config, None)
    return Launch(run_id, dataset, True, RUNNING, _spawn(ws, run_id, dataset))


def _spawn(ws: Workspace, run_id: str, dataset: str) -> Path:
    """Start the detached training process of a recorded run; its log file."""
    folder = ws.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / LOG_FILE
    command = [sys.executable, "-m", "core.cli", WORKER_COMMAND, "--run", run_id, "--workspace", str(ws.root)]
    path = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p)
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command,
                env={**os.environ, "PYTHONPATH": path},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # neither Ctrl-C in the terminal nor the end of the command stops it
            )
    except BaseException:
        set_run(ws, run_id, dataset, FAILED, run_record(ws, run_id)["config"], None)
        raise
    _STARTED[:] = [p for p in _STARTED if p.poll() is None] + [proc]  # poll() reaps the ended ones
    save_json(folder / BACKGROUND_FILE, {"pid": proc.pid, "log": str(log), "command": command, "at": time.time()})
    return log


def train_recorded(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Train a run that :func:`ensure_training` recorded (the background process); its final snapshot."""
    from core.runs.jobs import TrainingJob  # torch: only in the training process

    record = run_record(ws, run_id)
    if record["status"] != RUNNING or not record["config"].get("background"):
        raise DataError(f"run {run_id} is {record['status']}, not a background run waiting to be trained")
    job = TrainingJob(str(ws.root), record["dataset"], record["config"].get("settings") or {}, run_id=run_id)
    signal.signal(signal.SIGTERM, lambda *_: job.cancel())
    folder = ws.run_dir(run_id)
    job.run_in_thread()
    while not job.join(LIVE_SECONDS):
        _save_live(folder, job.snapshot())
    snap = job.snapshot()
    _save_live(folder, snap)
    record = run_record(ws, run_id)
    if snap["status"] == FAILED and record["status"] == RUNNING:  # failed before train_run recorded anything
        set_run(ws, run_id, record["dataset"], FAILED, record["config"], None)
    return snap


def _save_live(folder: Path, snap: dict[str, Any]) -> None:
    save_json(folder / LIVE_FILE, finite_or_none({**{k: snap[k] for k in _LIVE_KEYS}, "at": time.time()}))


# -- what the pages show -----------------------------------------------------------------------------------
def training_state(ws: Workspace, dataset: str) -> Training | None:
    """The dataset's newest running run (``running`` or ``stopped``), else its newest run when that one
    failed in the background; None when neither (the caller checks first that no run is usable)."""
    runs = list_runs(ws)
    ours = runs[runs["dataset"] == dataset].to_dict("records") if len(runs) else []
    for rec in ours:
        if rec["status"] == RUNNING:
            alive = _alive(ws, rec["run_id"])
            return _training(ws, rec["run_id"], dataset, RUNNING if alive else STOPPED)
    if ours and ours[0]["status"] == FAILED and (ws.run_dir(ours[0]["run_id"]) / BACKGROUND_FILE).is_file():
        return _training(ws, ours[0]["run_id"], dataset, FAILED)
    return None


def _training(ws: Workspace, run_id: str, dataset: str, status: str) -> Training:
    folder = ws.run_dir(run_id)
    background = (folder / BACKGROUND_FILE).is_file()
    return Training(run_id, dataset, status, background, _log_of(ws, run_id), _progress(ws, run_id))


def _progress(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's live progress (background runs), else its epoch progress (every run), else a start."""
    folder = ws.run_dir(run_id)
    if (folder / LIVE_FILE).is_file():
        return load_json(folder / LIVE_FILE)
    epochs = (run_record(ws, run_id)["config"].get("settings") or {}).get("train", {}).get("epochs")
    epochs = int(epochs) if isinstance(epochs, int) and epochs > 0 else TrainConfig.epochs
    epoch = int(load_json(folder / PROGRESS_FILE)["epoch"]) if (folder / PROGRESS_FILE).is_file() else 0
    phase = "training" if epoch else "starting"
    return {"status": RUNNING, "phase": phase, "epoch": epoch, "epochs": epochs, "fraction": min(1.0, epoch / epochs)}


def progress_text(progress: dict[str, Any]) -> tuple[float, str]:
    """(fraction in [0, 1], words) of a run's progress, as the Train page's bar says it."""
    phase, epoch, epochs = progress.get("phase"), progress.get("epoch") or 0, progress.get("epochs") or 0
    if phase in (None, "starting"):
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


# -- the process of a background run -----------------------------------------------------------------------
def _log_of(ws: Workspace, run_id: str) -> Path | None:
    path = ws.run_dir(run_id) / LOG_FILE
    return path if path.is_file() else None


def pid_of(ws: Workspace, run_id: str) -> int | None:
    """The process ID of a background run (its process group's too); None for a run started elsewhere."""
    marker = ws.run_dir(run_id) / BACKGROUND_FILE
    return int(load_json(marker)["pid"]) if marker.is_file() else None


def _alive(ws: Workspace, run_id: str) -> bool:
    """Whether a running run's process is there: always for a run started elsewhere (no ``background.json``)."""
    pid = pid_of(ws, run_id)
    return pid is None or process_alive(pid, run_id)


def process_alive(pid: int, run_id: str) -> bool:
    """Whether process ``pid`` runs and is the one training ``run_id`` (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").is_dir():  # no procfs: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X") and run_id.encode() in command


def stop(ws: Workspace, run_id: str, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to a background run's process group (SIGTERM: cancel, the model so far saved); whether one
    was there."""
    pid = pid_of(ws, run_id)
    if pid is None:
        raise DataError(f"run {run_id} was not started in the background: stop it where it was started")
    if not process_alive(pid, run_id):
        return False
    os.killpg(pid, sig)
    return True
