"""`behaviorlens train | evaluate | recommend | runs`: the model subcommands of the CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.store import audit
from core.store.workspace import Workspace

# `evaluate --protocol`: core.model.protocol.PROTOCOLS (not imported here: core.model loads torch, which
# `behaviorlens ingest` never needs); the first is the default
PROTOCOLS = ("full", "new-items")
COMMANDS = ("train", "evaluate", "recommend", "runs", "weights")
WEIGHTS_HELP = (
    "fusion weights: NAME=VALUE pairs over engagement, rating, popularity, freshness (normalized to "
    "sum 1), or a saved preset name; default: the run's saved preset, if any"
)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the model subcommands on the top-level subparsers."""
    p = sub.add_parser("train", parents=[common], help="train the multi-task model on a dataset")
    p.add_argument("--dataset", help="dataset name (see `behaviorlens datasets`)")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run that is not training (interrupted, cancelled, failed) from its last epoch, or from "
        "scratch with its recorded settings when it stopped before its first checkpoint; refused while RUN's own "
        "process is still training it",
    )
    p.add_argument(
        "--from",
        dest="parent",
        metavar="RUN",
        help="update RUN: start from its weights and settings and train a few epochs (--epochs, default 5) on "
        "--dataset (default: RUN's dataset, e.g. after new events were ingested under a new name); new items get "
        "their text embeddings and new ID rows, new users need nothing; the new run records RUN as its parent",
    )
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping on validation NDCG@10)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--config", metavar="FILE", help="JSON settings: {model: {...}, train: {...}, heads, encoder, ...}")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--request-time",
        choices=("standin", "actual"),
        help="the run's protocol: held-out events asked at the stand-in time (default) or at their own time",
    )
    p.add_argument(
        "--cold-items",
        type=float,
        metavar="SHARE",
        help="hold this share of the items (e.g. 0.1) out of training entirely, drawn with the seed: their events "
        "leave every training history, target and validation; `evaluate --protocol new-items` then scores each "
        'user\'s last event on one of them (the config key "cold_items"; default 0: none)',
    )
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="train in N processes on this machine (data-parallel on torch.distributed: gloo on the CPU, NCCL with "
        "one GPU per process), as `torchrun --nproc-per-node N -m core.cli train ...`; default 1",
    )
    p.add_argument("--nnodes", default="1", help="machines taking part (each runs the same command), as torchrun's")
    p.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="with --nnodes above 1: the rendezvous every machine joins"
    )
    p.add_argument("--rdzv-id", metavar="ID", help="with --nnodes above 1: the job's name, the same on every machine")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # the launcher's choice, passed to its workers
    p = sub.add_parser("evaluate", parents=[common], help="metrics of a saved run")
    p.add_argument("--run", required=True, help="run id (see `behaviorlens runs`)")
    p.add_argument(
        "--exclude-seen",
        choices=("yes", "no", "auto"),
        default="auto",
        help="drop the user's earlier items from the candidates (auto: the run's protocol)",
    )
    p.add_argument("--target-behavior", metavar="B", help="hold out each user's last event of this behavior")
    p.add_argument(
        "--request-time",
        choices=("standin", "actual"),
        help="when a held-out event is asked: standin = the last history event + the typical next-visit gap "
        "(the run's default unless it was trained otherwise), actual = the held-out event's own time "
        '(figures labelled "time-aware: target time known")',
    )
    p.add_argument("--weights", metavar="engagement=0.7,rating=0.3", help=WEIGHTS_HELP)
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=PROTOCOLS[0],
        help="full (the default): leave-last-out over every item; new-items: each user's last event on an item held "
        "out of training (a run trained with --cold-items), asked at the stand-in time after the events before it, "
        "full ranking, with popularity and random rankings beside it",
    )
    p = sub.add_parser("recommend", parents=[common], help="top-K items for one user")
    p.add_argument("--run", required=True)
    p.add_argument("--user", required=True, help="the user's original ID (pseudonymized internally)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--weights", metavar="engagement=0.7,rating=0.3", help=WEIGHTS_HELP)
    p = sub.add_parser("runs", parents=[common], help="list saved runs with their metrics (or delete one)")
    actions = p.add_subparsers(dest="runs_action", metavar="ACTION", help="without one: list the runs")
    p = actions.add_parser("delete", parents=[common], help="delete a run: its row and its folder")
    p.add_argument("run", metavar="RUN", help="run id (see `behaviorlens runs`)")
    p.add_argument(
        "--force",
        action="store_true",
        help="delete it even while it is training: its process is killed first when it runs on this host",
    )
    p = sub.add_parser("weights", parents=[common], help="list or save a run's fusion weight presets")
    p.add_argument("--run", required=True)
    p.add_argument("--save", metavar="NAME", help="store --weights under NAME as the run's default preset")
    p.add_argument("--weights", metavar="engagement=0.7,rating=0.3", help="the weights to save (NAME=VALUE pairs)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from core.store.files import load_json

    settings: dict[str, Any] = {}
    if args.config:
        settings = load_json(Path(args.config))
    if args.request_time is not None:
        settings["request_time"] = args.request_time
    if args.cold_items is not None:
        if not 0 <= args.cold_items < 1:
            raise DataError(
                f"--cold-items {args.cold_items:g}: expected the share of items held out of training, from 0 (none, "
                "the default) up to but not including 1, such as 0.1"
            )
        settings["cold_items"] = args.cold_items
    train = dict(settings.get("train", {}))
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.seed is not None:
        train["seed"] = args.seed
    settings["train"] = train
    settings["device"] = args.device
    return settings


def _other_rank() -> bool:
    """This process is a rank other than 0 of a multi-process training (core.model.distributed)."""
    from core.model.distributed import current

    group = current()
    return group is not None and not group.leader


def _progress(quiet: bool) -> Any:
    def report(event: dict[str, Any]) -> None:
        if event.get("event") == "epoch":
            print(
                f"epoch {event['epoch']}: loss {event['loss']:.4f}, valid NDCG@10 "
                f"{event.get('valid_NDCG@10', float('nan')):.4f}, {event['seconds']:.1f}s",
                file=sys.stderr,
            )

    return None if quiet else report


def run(args: argparse.Namespace, ws: Workspace, as_json: bool) -> int:
    """Dispatch one model subcommand (torch is imported only here, not for ingest)."""
    from core.model.distributed import follower
    from core.runs.fusion import evaluate_fused, recommend_fused, resolve_weights
    from core.runs.lifecycle import delete_run
    from core.runs.records import list_runs
    from core.runs.run import open_run
    from core.runs.scores import evaluate_run, recommend_run, trained_evaluation
    from core.runs.train import resume_run, train_run, update_settings

    if args.command == "train":
        if args.nproc_per_node != 1 or str(args.nnodes) != "1":
            from core.runs.launch import launch

            return launch(args, ws, args.argv)
        if args.resume and (args.dataset or args.parent) or not (args.dataset or args.resume or args.parent):
            raise DataError(
                "train needs one of --dataset NAME (a new run), --resume RUN or --from RUN [--dataset NAME] (an update)"
            )
        report = _progress(args.quiet or as_json)
        if args.resume:
            if not follower():  # one record per resume, not one per rank
                audit.record(ws, "resume", args.resume, "from the command line")
            run_id = resume_run(open_run(ws, args.resume), progress=report)
            if _other_rank():
                return 0
        elif args.parent:
            parent = open_run(ws, args.parent)
            dataset = args.dataset or parent.dataset
            if args.config or args.request_time:
                raise DataError(
                    "--from RUN keeps RUN's settings: --config and --request-time do not apply to an update"
                )
            if args.cold_items is not None:
                raise DataError("--from RUN keeps RUN's settings: --cold-items does not apply to an update")
            settings = update_settings(parent, args.epochs, args.device)
            if args.seed is not None:
                settings["train"]["seed"] = args.seed
            run_id = train_run(ws, dataset, settings, progress=report, parent=args.parent, run_id=args.run_id)
            if _other_rank():
                return 0
            audit.record(
                ws, "train", run_id, f"dataset {dataset}, updated from run {args.parent}, from the command line"
            )
        else:
            run_id = train_run(ws, args.dataset, _settings(args), progress=report, run_id=args.run_id)
            if _other_rank():
                return 0  # rank 0 of a multi-process run records and reports it
            audit.record(ws, "train", run_id, f"dataset {args.dataset}, from the command line")
        trained = open_run(ws, run_id)
        result = {"run": run_id, **trained_evaluation(trained)}
        if (trained.metrics or {}).get("new_items"):  # trained with --cold-items: the new-items figures too
            result["new_items"] = (trained.metrics or {})["new_items"]
        _emit(result, as_json, f"run {run_id}: test {result['test']}, valid {result['valid']}")
    elif args.command == "evaluate":
        exclude = {"yes": True, "no": False, "auto": None}[args.exclude_seen]
        target = ... if args.target_behavior is None else args.target_behavior
        run_ = open_run(ws, args.run)
        if args.protocol != PROTOCOLS[0]:
            if args.weights:
                raise DataError(f"--protocol {args.protocol} scores the model's own ranking: leave out --weights")
            result = evaluate_run(run_, exclude, target, args.request_time, args.protocol)
        else:
            preset, weights = resolve_weights(run_, args.weights)
            if weights is None:
                result = evaluate_run(run_, exclude, target, args.request_time)
            else:
                result = evaluate_fused(run_, weights, exclude, target, preset, args.request_time)
        _emit(result, as_json, _evaluation_text(result))
    elif args.command == "recommend":
        if args.k < 1:
            raise DataError(f"--k {args.k}: expected a positive number of items")
        run_ = open_run(ws, args.run)
        preset, weights = resolve_weights(run_, args.weights)
        if weights is None:
            top = recommend_run(run_, args.user, args.k)
        else:
            top = recommend_fused(run_, args.user, args.k, weights)
        payload = {"run": args.run, "user": args.user, "items": json.loads(top.to_json(orient="records"))}
        if weights is not None:
            payload.update(weights=weights, preset=preset)
        _emit(payload, as_json, top.to_string(index=False))
    elif args.command == "runs" and getattr(args, "runs_action", None) == "delete":
        gone = delete_run(ws, args.run, force=args.force)
        stopped = f" (its process {gone['stopped']} was killed first)" if gone["stopped"] is not None else ""
        _emit(gone, as_json, f"deleted run {args.run} and its folder {gone['folder']}{stopped}")
    elif args.command == "runs":
        frame = list_runs(ws)
        _emit(
            json.loads(frame.to_json(orient="records", date_format="iso")) if len(frame) else [],
            as_json,
            frame.to_string(index=False) if len(frame) else "no runs",
        )
    elif args.command == "weights":
        _weights(args, ws, as_json)
    return 0


def _weights(args: argparse.Namespace, ws: Workspace, as_json: bool) -> None:
    """`behaviorlens weights --run ID [--save NAME --weights ...]`: list or store presets."""
    from core.fusion.formula import parse_weights
    from core.runs.fusion import list_presets, save_preset
    from core.runs.run import open_run

    if bool(args.save) != bool(args.weights):
        raise DataError(
            "weights: give --save NAME with --weights NAME=VALUE,... to store a preset, or neither to list them"
        )
    if args.save:
        presets = save_preset(open_run(ws, args.run), args.save, parse_weights(args.weights))
    else:
        presets = list_presets(open_run(ws, args.run))
    lines = [
        f"{'*' if n == presets['default'] else ' '} {n}: " + ", ".join(f"{k}={v:.3g}" for k, v in w.items())
        for n, w in presets["presets"].items()
    ]
    _emit({"run": args.run, **presets}, as_json, "\n".join(lines) or "no presets")


def _evaluation_text(result: dict[str, Any]) -> str:
    """``evaluate`` without --json: the label, the test and valid figures, and the bars beside them."""
    from core.runs.scores import bars_line

    text = f"{result['label']}\ntest {result['test']}\nvalid {result['valid']}"
    if result["protocol"] == PROTOCOLS[1]:
        text += f"\n{result['users']} users, {result['held_out_items']} held-out items"
        text += f"\nunder the same protocol: {bars_line(result['baselines']['test'])}"
    return text


def _emit(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj, default=str) if as_json else text)
