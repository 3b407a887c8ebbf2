"""A run as a whole: taken over to be resumed, and deleted (its row and its folder).

Both refuse a run whose owner (:mod:`core.runs.owner`) is alive with :class:`~core.errors.RunBusyError`:
two processes never train one run, and a run is never deleted under the process that trains it
(``delete_run(..., force=True)`` kills that process first when it runs on this host). The checks and
the change they lead to happen under the workspace lock, so two callers cannot both pass them.

A resumed run restarts the files of one training attempt: ``live.json`` (what a detached worker
publishes) and ``cancel.json`` (a cancel request) are removed when it is taken over.
Importing this module does not import torch.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from core.errors import NotFoundError, RunBusyError
from core.runs.owner import claim, owner_alive, owner_of, owning, signal_owner, wait_gone
from core.runs.records import DONE, RUNNING, delete_record, run_record
from core.store import audit
from core.store.workspace import Workspace

LIVE_FILE, CANCEL_FILE = "live.json", "cancel.json"  # the files of one training attempt
STOP_SECONDS = 30.0  # how long a forced delete waits for the killed owner to end


def owner_text(folder: Path) -> str:
    """Where the owner of the run in ``folder`` runs, in words (``process 123 on host h``)."""
    owner = owner_of(folder) or {}
    return f"process {owner.get('pid', '?')} on host {owner.get('host', '?')}"


def busy(ws: Workspace, run_id: str, record: dict[str, Any]) -> bool:
    """Whether a process trains ``run_id`` now: it reads running, or a live process has taken it over."""
    return record["status"] == RUNNING or owner_alive(ws.run_dir(run_id))


def resumable(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The record of ``run_id`` when it can be resumed now (it is not training and not done); nothing is claimed.
    NotFoundError / RunBusyError as :func:`take_over`."""
    record = run_record(ws, run_id)
    if busy(ws, run_id, record):
        raise RunBusyError(
            f"run {run_id} is still training ({owner_text(ws.run_dir(run_id))}): wait for it to end, or cancel it, "
            "before resuming it"
        )
    if record["status"] == DONE:
        raise NotFoundError(f"run {run_id!r} has no saved training state to resume from (status done): it is finished")
    return record


def take_over(ws: Workspace, run_id: str, pid: int | None = None) -> dict[str, Any]:
    """Take a run that is not training (interrupted, cancelled, failed) over for resuming by process ``pid`` (this
    one by default): checked and claimed under the workspace lock, so that a second caller finds it busy; the
    files of its last attempt removed; its record.

    Raises:
        NotFoundError: no such run, or the run is done (nothing to resume).
        RunBusyError: the run's owner is alive (it is training now).
    """
    with ws.lock():
        record = resumable(ws, run_id)
        folder = ws.run_dir(run_id)
        for name in (LIVE_FILE, CANCEL_FILE):
            (folder / name).unlink(missing_ok=True)
        claim(folder, run_id, pid)
    return record


@contextmanager
def resuming(ws: Workspace, run_id: str) -> Iterator[dict[str, Any]]:
    """:func:`take_over` for this process, which then owns the run (heartbeat) for the block; the run's record."""
    with ExitStack() as stack:
        with ws.lock():
            record = take_over(ws, run_id)
            stack.enter_context(owning(ws.run_dir(run_id), run_id))
        yield record


def delete_run(ws: Workspace, run_id: str, force: bool = False, actor: str | None = None) -> dict[str, Any]:
    """Delete a run: its folder, then its row. ``{"run", "folder", "stopped"}`` (the pid killed, or None).

    A run whose owner is alive is refused, unless ``force``: its process is then killed (SIGKILL, the whole
    process group of a detached worker) when it runs on this host, and the run deleted once it has ended;
    a process on another host cannot be stopped from here and is left to fail on its next write.

    Raises:
        NotFoundError: no such run.
        RunBusyError: the run is training and ``force`` is not set, or its killed process did not end.
    """
    with ws.lock():
        record = run_record(ws, run_id)
        folder = ws.run_dir(run_id)
        stopped = None
        if busy(ws, run_id, record):
            if not force:
                raise RunBusyError(
                    f"run {run_id} is still training ({owner_text(folder)}): cancel it first, or delete it with "
                    f"`behaviorlens runs delete {run_id} --force`, which stops it"
                )
            stopped = signal_owner(folder, signal.SIGKILL)
            if stopped is not None and not wait_gone(folder, STOP_SECONDS):
                raise RunBusyError(
                    f"run {run_id}: process {stopped} was killed but is still there after {STOP_SECONDS:.0f} s"
                )
        if folder.exists():
            shutil.rmtree(folder)
        delete_record(ws, run_id)
        audit.record(ws, "delete run", run_id, f"dataset {record['dataset']}" + (", forced" if force else ""), actor)
    return {"run": run_id, "folder": str(folder), "stopped": stopped}
