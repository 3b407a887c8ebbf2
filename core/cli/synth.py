"""`behaviorlens synth`: generate the sample dataset with a planted behavior-influence truth,
writing ``events.csv``, ``items.csv`` and ``ground_truth.json`` (see :mod:`core.data.synth`)
into ``--out``. It needs no workspace. Exit status 0, or 2 on a bad option (``error: ...`` on
stderr, nothing written)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.data import synth
from core.errors import DataError

COMMANDS = ("synth",)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``synth`` on the top-level subparsers."""
    p = sub.add_parser(
        "synth",
        parents=[common],
        help="generate the sample dataset with a planted behavior-influence truth",
        description="Generate the sample dataset with a planted behavior-influence truth.",
    )
    defaults = synth.SynthConfig()
    p.add_argument("--out", type=Path, default=Path("sample_data"), help="output folder")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--users", type=int, default=defaults.n_users)
    p.add_argument("--items", type=int, default=defaults.n_items)
    p.add_argument("--events", type=int, default=defaults.target_events, help="target number of events (approximate)")
    p.add_argument("--weeks", type=int, default=defaults.weeks)
    p.add_argument("--weights", default="", help="overrides, e.g. view=0.3,click=0.6,purchase=2.0")


def run(args: argparse.Namespace, as_json: bool) -> int:
    """Generate and write the sample; 0, or 2 on bad options. No workspace is opened."""
    try:
        config = synth.SynthConfig(
            seed=args.seed,
            n_users=args.users,
            n_items=args.items,
            target_events=args.events,
            weeks=args.weeks,
            behavior_weights=synth.parse_weights(args.weights),
        )
        data = synth.generate(config)
        paths = synth.write(data, args.out)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = data.truth["counts"]
    if as_json:
        print(json.dumps({"paths": [str(p) for p in paths], "counts": counts}))
    else:
        print(f"wrote {', '.join(str(p) for p in paths)}: {counts}")
    return 0
