"""Training in a detached worker process: every run the Train page starts or resumes, and the demo run.

A run trains in a process of its own (``python -m core.cli train-background --run ID``, in a session of
its own, its output going to ``train.log`` in the run folder), so that its seed, its random state and
torch's thread count belong to it alone, and so that it outlives the command or page that started it.

- :func:`start_training` records a new run as ``running`` and starts its worker (the Train page).
- :func:`resume_training` takes an interrupted, cancelled or failed run over and starts a worker that
  resumes it from its last checkpoint (from scratch when it has none).
- :func:`ensure_training` starts the demo run of ``behaviorlens sample --train`` (``make demo``) unless
  the dataset has a usable run or a live running one: a run whose worker is gone reads ``interrupted``
  and a new run replaces it.

The launcher owns the run (:mod:`core.runs.owner`) from the moment it records it until the worker's
process exists, then records the worker as its owner. The worker (:func:`train_recorded`) trains through
a :class:`~core.runs.jobs.TrainingJob` and rewrites ``live.json`` (the job's whole snapshot: phase,
encoding, epoch and step, loss, history, step losses, best epoch, error or crash) every
:data:`LIVE_SECONDS`; SIGTERM or a ``cancel.json`` request (:func:`cancel_training`) cancels it: the model
so far is saved and the run recorded as cancelled. ``background.json`` (pid, log, label) marks a run
trained by a worker. Importing this module does not import torch: only :func:`train_recorded` does.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core._checks import finite_or_none
from core.errors import BehaviorLensError, DataError
from core.model.config import check_settings
from core.runs.lifecycle import CANCEL_FILE, LIVE_FILE, take_over
from core.runs.owner import claim, local_pid, owner_of, owning, release, signal_owner
from core.runs.owner import process_alive as process_alive  # re-exported: whether a worker's pid still runs it
from core.runs.records import FAILED, PICKABLE, RUNNING, list_runs, new_run_id, run_record, set_run
from core.store import audit
from core.store.files import load_json, save_json
from core.store.workspace import Workspace

DEMO_CONFIG_ENV = "BEHAVIORLENS_DEMO_CONFIG"  # a JSON settings file (as `train --config`) for the demo run
DEMO_EPOCHS = 6  # the default model; valid NDCG@10 within 0.001 of epoch 8 on the sample; ~3 min on 2 idle cores
DEMO_SETTINGS: dict[str, Any] = {"device": "auto", "train": {"epochs": DEMO_EPOCHS}}
DEMO_LABEL = "demo"
WORKER_COMMAND = "train-background"  # the hidden CLI command the process runs
FOLLOWER = "follower"  # what a rank other than 0 of a multi-process run reports
PROCESSES_KEY, MAX_PROCESSES = "processes", 64  # a run's data-parallel processes (the run config's key)
WORKER_ENV = "BEHAVIORLENS_DISTRIBUTED"  # the workers' command line under torch's launcher (core.runs.launch)
BACKGROUND_FILE, LOG_FILE = "background.json", "train.log"
LIVE_SECONDS = 1.0
_REPO = Path(__file__).resolve().parents[2]  # the folder that holds the ``core`` package
_STARTED: list[subprocess.Popen[bytes]] = []  # this process's children: kept (no ResourceWarning) until reaped


@dataclass(frozen=True)
class Launch:
    """What a launch did: ``started`` a worker for ``run_id``, or found that run (``status``) there."""

    run_id: str
    dataset: str
    started: bool
    status: str
    log: Path | None


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


def ensure_training(ws: Workspace, dataset: str, settings: dict[str, Any], label: str = DEMO_LABEL) -> Launch:
    """Start training ``dataset`` in a worker unless it has a usable or a live running run.

    The new run's ID is ``<dataset>-<label>-<time>-<hex>``; a run whose worker is gone reads ``interrupted``
    (it stays, resumable) and does not stop a new one."""
    ws.dataset(dataset)  # NotFoundError for a dataset that is not there
    check_settings(settings)
    with ws.lock():  # a second call waits, then finds the run recorded
        runs = list_runs(ws)
        ours = runs[runs["dataset"] == dataset].to_dict("records") if len(runs) else []
        for rec in ours:
            if rec["status"] in PICKABLE or rec["status"] == RUNNING:
                return Launch(rec["run_id"], dataset, False, rec["status"], _log_of(ws, rec["run_id"]))
        run_id = new_run_id(f"{dataset[:30]}-{label}")
        _record(ws, run_id, dataset, settings)
    audit.record(ws, "train", run_id, f"dataset {dataset}, the {label} model in a worker process")
    return Launch(run_id, dataset, True, RUNNING, _spawn(ws, run_id, dataset, label))


def start_training(
    ws: Workspace,
    dataset: str,
    settings: dict[str, Any],
    actor: str | None = None,
    parent: str | None = None,
    processes: int = 1,
) -> Launch:
    """Record a new run of ``dataset`` with ``settings`` and train it in a worker of its own (the Train page);
    ``parent``: the run it starts from (an update, :mod:`core.model.warm_start`); ``processes``: data-parallel
    processes on this machine (:mod:`core.model.distributed`), started by torch's elastic launcher.

    Raises:
        NotFoundError: no such dataset.
        DataError: a setting is unknown or out of range, or no run ID can be made from the dataset name.
    """
    ws.dataset(dataset)
    check_settings(settings)
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise DataError(f"processes={processes!r}: expected a whole number from 1 to {MAX_PROCESSES}")
    run_id = new_run_id(dataset)
    with ws.lock():
        _record(ws, run_id, dataset, settings, parent, processes)
    updated = f", updated from run {parent}" if parent else ""
    audit.record(ws, "train", run_id, f"dataset {dataset}{updated}, in a worker process", actor)
    return Launch(run_id, dataset, True, RUNNING, _spawn(ws, run_id, dataset, ""))


def resume_training(ws: Workspace, run_id: str, actor: str | None = None) -> Launch:
    """Resume a run that is not training (interrupted, cancelled, failed) in a worker: from its last checkpoint,
    from scratch with its recorded settings when it has none. NotFoundError / RunBusyError as
    :func:`~core.runs.lifecycle.take_over`."""
    record = take_over(ws, run_id, os.getpid())  # owned by this process until its worker exists
    config = {**record["config"], "background": True, "resume": True}
    set_run(ws, run_id, record["dataset"], RUNNING, config, None)
    audit.record(ws, "resume", run_id, f"dataset {record['dataset']}, in a worker process", actor)
    return Launch(run_id, record["dataset"], True, RUNNING, _spawn(ws, run_id, record["dataset"], ""))


def _record(
    ws: Workspace, run_id: str, dataset: str, settings: dict[str, Any], parent: str | None = None, processes: int = 1
) -> None:
    """Record a new run as running, owned by this process until its worker exists."""
    claim(ws.run_dir(run_id), run_id)
    config = {"dataset": dataset, "settings": settings, "background": True, **({"parent": parent} if parent else {})}
    if processes > 1:
        config[PROCESSES_KEY] = processes
    set_run(ws, run_id, dataset, RUNNING, config, None)


def _spawn(ws: Workspace, run_id: str, dataset: str, label: str) -> Path:
    """Start the detached worker of a recorded run and make it the run's owner; its log file."""
    folder = ws.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / LOG_FILE
    command = [sys.executable, "-m", "core.cli", WORKER_COMMAND, "--run", run_id, "--workspace", str(ws.root)]
    path = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    processes = int(run_record(ws, run_id)["config"].get(PROCESSES_KEY) or 1)
    if processes > 1:  # torch's elastic launcher runs the same worker command in each process (as in core.runs.launch)
        env[WORKER_ENV] = json.dumps(command[3:])
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command += ["--module", "core.cli"]
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # neither Ctrl-C in the terminal nor the end of the command stops it
            )
    except BaseException:
        set_run(ws, run_id, dataset, FAILED, run_record(ws, run_id)["config"], None)
        release(folder)
        raise
    _STARTED[:] = [p for p in _STARTED if p.poll() is None] + [proc]  # poll() reaps the ended ones
    claim(folder, run_id, proc.pid)
    marker = {"pid": proc.pid, "log": str(log), "command": command, "label": label, "at": time.time()}
    save_json(folder / BACKGROUND_FILE, marker)
    return log


# -- control from outside --------------------------------------------------------------------------------
def cancel_training(ws: Workspace, run_id: str) -> bool:
    """Ask a run's worker to cancel (``cancel.json``, then SIGTERM once the worker handles it); whether it
    was training. The worker stops before its next step, saves the model so far and records the run cancelled."""
    folder = ws.run_dir(run_id)
    if run_record(ws, run_id)["status"] != RUNNING:
        return False
    save_json(folder / CANCEL_FILE, {"at": time.time()})
    several = (run_record(ws, run_id)["config"].get(PROCESSES_KEY) or 1) > 1  # their launcher would end them at once
    if (folder / LIVE_FILE).is_file() and not several:  # written after the worker's SIGTERM handler: safe now
        signal_owner(folder, signal.SIGTERM)
    return True


def stop(ws: Workspace, run_id: str, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the process that trains ``run_id`` when it runs on this host (a worker's whole process
    group); whether there was one."""
    return signal_owner(ws.run_dir(run_id), sig) is not None


def pid_of(ws: Workspace, run_id: str) -> int | None:
    """The pid of the process that owns (or last owned) ``run_id`` on this host; None when none is known."""
    folder = ws.run_dir(run_id)
    owner = owner_of(folder)
    if owner is not None:
        return local_pid(owner)
    marker = folder / BACKGROUND_FILE
    return int(load_json(marker)["pid"]) if marker.is_file() else None


def _log_of(ws: Workspace, run_id: str) -> Path | None:
    path = ws.run_dir(run_id) / LOG_FILE
    return path if path.is_file() else None


# -- the worker ------------------------------------------------------------------------------------------
def train_recorded(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Train a run recorded for a worker (the worker process itself); its final snapshot. In a multi-process run
    this is rank 0; the other ranks follow it (:func:`_follow_recorded`)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return _follow_recorded(ws, run_id)
    stop_asked = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_asked.set())  # first: a cancel must never kill the worker
    from core.runs.jobs import TrainingJob  # torch: only in the worker

    folder = ws.run_dir(run_id)
    with owning(folder, run_id):  # the heartbeat, from before the data and the encoder load until the end
        record = run_record(ws, run_id)
        config = record["config"]
        if record["status"] != RUNNING or not config.get("background"):
            raise DataError(f"run {run_id} is {record['status']}, not a run recorded for a worker to train")
        settings = config.get("settings") or {}
        resume = bool(config.get("resume"))
        job = TrainingJob(
            str(ws.root), record["dataset"], settings, run_id, resume, None if resume else config.get("parent")
        )
        _save_live(folder, job.snapshot())  # from here on SIGTERM is handled (cancel_training waits for it)

        def cancel_asked() -> bool:
            return stop_asked.is_set() or (folder / CANCEL_FILE).is_file()

        if cancel_asked():
            job.cancel()
        job.run_in_thread()
        while not job.join(LIVE_SECONDS):
            if cancel_asked():
                job.cancel()
            _save_live(folder, job.snapshot())
        snap = job.snapshot()
        _save_live(folder, snap)
        record = run_record(ws, run_id)
        if snap["status"] == FAILED and record["status"] == RUNNING:  # failed before train_run recorded anything
            set_run(ws, run_id, record["dataset"], FAILED, record["config"], None)
    return snap


def _follow_recorded(ws: Workspace, run_id: str) -> dict[str, Any]:
    """A rank other than 0 of a multi-process run: the same training on its share of each batch, writing nothing;
    it stops when rank 0 stops (a cancel reaches it through the training loop)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a cancel is rank 0's to take, at a step all ranks share
    from core.runs.train import train_run

    record = run_record(ws, run_id)
    config, resume = record["config"], bool(record["config"].get("resume"))
    parent = None if resume else config.get("parent")
    train_run(ws, record["dataset"], config.get("settings") or {}, run_id=run_id, resume=resume, parent=parent)
    return {"status": FOLLOWER, "run": run_id, "rank": int(os.environ["RANK"]), "error": None, "crash": None}


def _save_live(folder: Path, snap: dict[str, Any]) -> None:
    save_json(folder / LIVE_FILE, finite_or_none({**snap, "pid": os.getpid(), "at": time.time()}))
