"""`behaviorlens influence | counterfactual`: per-behavior influence across users, and counterfactual sets."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.store.workspace import Workspace

COMMANDS = ("influence", "counterfactual")
METHOD_CHOICES = ("loo", "ig", "swap")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``influence`` and ``counterfactual`` on the top-level subparsers."""
    p = sub.add_parser(
        "influence",
        parents=[common],
        help="how much each behavior type drives the recommendations, across a sample of users",
    )
    p.add_argument("--run", required=True, help="run id (see `behaviorlens runs`)")
    p.add_argument("--users", type=int, default=200, metavar="N", help="users sampled (default 200)")
    p.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="loo",
        help="loo (leave-one-out, fast), ig (Integrated Gradients) or swap (behavior swap, "
        "interventional per-event estimate); default loo",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the user sample and the bootstrap (default 0)")
    p.add_argument("--k", type=int, default=10, help="attribute each user's top-K recommended items (default 10)")
    p.add_argument(
        "--min-age",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="per_event counts events at least this much older than the user's newest event "
        "(default 3600: the ongoing session is left out; 0 counts every event)",
    )
    p.add_argument("--no-ablation", action="store_true", help="skip the behavior ablation (re-evaluations)")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="shard the users (and the ablation's behaviors) over N processes on torch.distributed and merge "
        "them: the same report as one process; default 1",
    )
    p = sub.add_parser(
        "counterfactual",
        parents=[common],
        help="the smallest set found of a user's events whose removal drops an item out of the top-K",
    )
    p.add_argument("--run", required=True, help="run id (see `behaviorlens runs`)")
    p.add_argument("--user", required=True, help="the user's original ID (pseudonymized internally)")
    p.add_argument("--item", required=True, help="the item's original ID")
    p.add_argument("--k", type=int, default=10, help="top-K cut-off (default 10)")
    p.add_argument("--max-removals", type=int, default=20, metavar="N", help="give up after N removals (default 20)")


def run(args: argparse.Namespace, ws: Workspace, as_json: bool) -> int:
    """Dispatch (torch is imported only here)."""
    from core.runs.explain import counterfactual_run
    from core.runs.influence import influence_run
    from core.runs.run import open_run

    if args.command == "influence" and args.nproc_per_node != 1:
        from core.runs.launch import launch_job

        return launch_job("influence", args.nproc_per_node, ws, args.argv)
    run_ = open_run(ws, args.run)
    if args.command == "influence":
        from core.model import distributed

        group = distributed.setup()  # a worker of `influence --nproc-per-node N`: its shard, merged below
        report = influence_run(
            run_, args.users, args.method, k=args.k, seed=args.seed, ablation=not args.no_ablation, min_age=args.min_age
        ).to_dict()
        if group is None or group.leader:
            print(json.dumps(report, allow_nan=False) if as_json else _influence_text(report))
    else:
        result = counterfactual_run(run_, args.user, args.item, args.k, args.max_removals).to_dict()
        print(json.dumps(result, allow_nan=False) if as_json else _counterfactual_text(result))
    return 0


def _influence_text(r: dict[str, Any]) -> str:
    """A readable table: one line per behavior, then time gaps and ablation deltas."""
    lines = [
        f"per-behavior influence ({r['method']}, engagement log-probability, top-{r['k']} items of "
        f"{r['users']} users, seed {r['seed']}); protocol: {r['protocol']}",
        f"  {'behavior':<12}{'share':>8}{'per event':>12}{'signed':>10}{'rows':>9}",
    ]
    for b, share in sorted(r["per_behavior_share"].items(), key=lambda kv: -(kv[1] or 0)):
        lines.append(
            f"  {b:<12}{_num(share):>8}{_num(r['per_event'].get(b)):>12}"
            f"{_num(r['per_behavior_signed'].get(b)):>10}{r['events'].get(b, 0):>9}"
        )
    lines.append("  by time gap: " + ", ".join(f"{g} {_num(v['share'])}" for g, v in r["by_time_gap"].items()))
    for b, weights in (r.get("model_weights") or {}).items():
        lines.append(f"  model weight of one {b} event: " + ", ".join(f"{age} {_num(w)}" for age, w in weights.items()))
    for b, d in (r["ablation"] or {}).items():
        lines.append(
            f"  without {b:<10} ΔHR@10 {_num(d['HR@10'], '+.4f')}  ΔNDCG@10 {_num(d['NDCG@10'], '+.4f')}"
            f"  ΔRMSE {_num(d['RMSE'], '+.4f')}  ({d['removed_events']} events masked)"
        )
    lines.append(f"{r['runtime_ms'] / 1000:.1f} s")
    return "\n".join(lines)


def _counterfactual_text(r: dict[str, Any]) -> str:
    lines = [r["message"]]
    for e in r["events"]:
        lines.append(
            f"  {e['time'][:16]}  {e['behavior']:<10} {(e['title'] or e['item'])[:40]:<40} {e['attribution']:+.4g}"
        )
    return "\n".join(lines)


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "n/a" if value is None else format(value, fmt)
