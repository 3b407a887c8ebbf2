"""``behaviorlens train --nproc-per-node N``: the same training in N processes through torch's elastic launcher.

It is ``torchrun --nproc-per-node N -m core.cli train ...`` run from here (``torch.distributed.run``): every
worker is ``python -m core.cli train`` with the same arguments, and :mod:`core.model.distributed` joins them
into one data-parallel job. One machine uses a local rendezvous (``--standalone``); several machines run the same
command on each, with ``--nnodes`` and one ``--rdzv-endpoint HOST:PORT`` (and ``--rdzv-id``), as torchrun does.

On one machine the launcher chooses the run ID and passes it on (``--run-id``), so it can mark the run failed,
with each failed rank's exit code, when a worker dies: the run never stays ``running``. Rank 0's worker prints the
command's result as a single process would; the other ranks print nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

from core.errors import DataError, NotFoundError, TrainingFailedError
from core.runs.background import WORKER_ENV  # the workers' command line (a JSON list)
from core.runs.lifecycle import resumable
from core.runs.owner import owner_alive
from core.runs.records import CANCELLED, DONE, FAILED, new_run_id, run_record, set_run
from core.store.workspace import Workspace

# the launcher's own options, left out of the workers' arguments (name -> takes a value)
LAUNCHER_FLAGS = {"--nproc-per-node": True, "--nnodes": True, "--rdzv-endpoint": True, "--rdzv-id": True}


def worker_args(argv: list[str], run_id: str | None, workspace: Workspace) -> list[str]:
    """``argv`` (a ``train`` command line) without the launcher's options, with ``--run-id`` and the workspace."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_FLAGS:
            skip = LAUNCHER_FLAGS[name] and "=" not in arg
            continue
        out.append(arg)
    if "--workspace" not in out:
        out += ["--workspace", str(workspace.root)]
    return out + ([] if run_id is None else ["--run-id", run_id])


def launch(args: Any, ws: Workspace, argv: list[str]) -> int:
    """Run ``train`` in ``args.nproc_per_node`` processes per node; 0 when every worker succeeded.

    Raises:
        DataError: a bad launcher option.
        TrainingFailedError: a worker failed (the run is marked failed, the failed ranks and exit codes named).
    """
    if args.nproc_per_node < 1:
        raise DataError(f"--nproc-per-node {args.nproc_per_node}: expected 1 or more processes per machine")
    several = str(args.nnodes) != "1"
    if several and not args.rdzv_endpoint:
        raise DataError(f"--nnodes {args.nnodes}: every machine needs the same --rdzv-endpoint HOST:PORT")
    if args.resume:  # checked here for a clear error before any worker starts; rank 0 takes it over
        run_id = resumable(ws, args.resume)["run_id"]
    else:
        run_id = None if several else new_run_id(args.dataset or args.parent)
    options = ["--nproc-per-node", str(args.nproc_per_node), "--nnodes", str(args.nnodes)]
    if several:
        options += ["--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint]
        options += ["--rdzv-id", args.rdzv_id or "behaviorlens"]
    else:
        options += ["--standalone"]
    failed = _elastic(options, worker_args(argv, None if args.resume else run_id, ws))
    if failed:
        if run_id is not None:
            _mark_failed(ws, run_id)
        where = f"run {run_id}" if run_id else "the run"
        raise TrainingFailedError(f"training {where} in {args.nproc_per_node} processes failed: {failed}")
    return 0


def launch_job(command: str, nproc: int, ws: Workspace, argv: list[str]) -> int:
    """Run a sharded batch job (``influence``) in ``nproc`` processes on this machine; 0 when all succeeded, else
    a TrainingFailedError naming the failed ranks."""
    if nproc < 1:
        raise DataError(f"--nproc-per-node {nproc}: expected 1 or more processes per machine")
    options = ["--nproc-per-node", str(nproc), "--nnodes", "1", "--standalone"]
    failed = _elastic(options, worker_args(argv, None, ws))
    if failed:
        raise TrainingFailedError(f"{command} in {nproc} processes failed: {failed}")
    return 0


def _elastic(options: list[str], worker: list[str]) -> str:
    """torch's elastic launcher with ``options`` over ``python -m core.cli WORKER``; '' when every worker
    succeeded, else each failed rank with its exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # the workers' arguments travel in the environment: torchrun's own parser would take a worker's --run for an
    # abbreviation of its --run-path
    os.environ[WORKER_ENV] = json.dumps(worker)
    try:
        run(parse_args([*options, "--module", "core.cli"]))
    except ChildFailedError as exc:
        return ", ".join(f"rank {rank} exited with code {f.exitcode}" for rank, f in sorted(exc.failures.items()))
    finally:
        os.environ.pop(WORKER_ENV, None)
    return ""


def _mark_failed(ws: Workspace, run_id: str) -> None:
    """The run reads failed (a worker died before rank 0 could record it so)."""
    try:
        record = run_record(ws, run_id)
    except NotFoundError:  # rank 0 died before recording the run: there is nothing to mark
        return
    if record["status"] not in (DONE, CANCELLED, FAILED) and not owner_alive(ws.run_dir(run_id)):
        set_run(ws, run_id, record["dataset"], FAILED, record["config"], None)
