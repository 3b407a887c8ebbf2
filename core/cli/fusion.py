"""`behaviorlens candidates`: build a run's fusion candidates ahead of the pages, in one process or sharded."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import DataError
from core.store.workspace import Workspace

COMMANDS = ("candidates",)
CONTEXTS = ("test", "valid", "all")  # core.fusion.candidates.CONTEXTS (that module imports torch)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``candidates`` on the top-level subparsers."""
    p = sub.add_parser(
        "candidates",
        parents=[common],
        help="compute and store a run's fusion candidates (both heads' scores per user), which the Fusion, Explain "
        "and Export pages and fused evaluate/recommend then read without running the model",
    )
    p.add_argument("--run", required=True, help="run id (see `behaviorlens runs`)")
    p.add_argument(
        "--context",
        default=",".join(CONTEXTS),
        metavar="test,valid,all",
        help="which histories: test (before each test target), valid (before each validation target), all (every "
        "event: what recommend reads); comma-separated, default all three",
    )
    p.add_argument("--rebuild", action="store_true", help="compute again even where a valid cache exists")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="shard the users over N processes on torch.distributed; rank 0 merges and stores the same arrays as "
        "one process; default 1",
    )


def contexts_of(text: str) -> tuple[str, ...]:
    """The contexts named in ``--context``, in the given order, each once."""
    names = tuple(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    wrong = [c for c in names if c not in CONTEXTS]
    if wrong or not names:
        raise DataError(f"--context {text!r}: expected a comma-separated subset of {', '.join(CONTEXTS)}")
    return names


def run(args: argparse.Namespace, ws: Workspace, as_json: bool) -> int:
    """Dispatch (torch is imported only here)."""
    contexts = contexts_of(args.context)  # checked before any process starts
    if args.nproc_per_node != 1:
        from core.runs.launch import launch_job

        return launch_job("candidates", args.nproc_per_node, ws, args.argv)
    from core.model import distributed
    from core.runs.fusion import precompute_candidates
    from core.runs.run import open_run

    run_ = open_run(ws, args.run)
    group = distributed.setup()  # a worker of `candidates --nproc-per-node N`: its share of the users
    built = precompute_candidates(run_, contexts, rebuild=args.rebuild)
    if group is None or group.leader:
        report = {"run": args.run, "processes": 1 if group is None else group.world, "contexts": built}
        lines = [
            f"{c}: {r['users']} users × {r['columns']} candidate columns of {r['items']} items, "
            f"{'read from the cache' if r['cached'] else 'computed and stored'} in {r['seconds']:.1f} s"
            for c, r in built.items()
        ]
        print(json.dumps(report) if as_json else "\n".join([f"run {args.run}", *lines]))
    return 0
