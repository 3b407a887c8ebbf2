"""Repeat-heavy logs: the default model against "the user's most recent distinct items" and popularity.

Where earlier items stay candidates, a heuristic with no training is the bar: the next event
often continues what the user just did. On the same split and protocol (leave-last-out, events
ordered by (timestamp, item ID), earlier items kept, held-out events asked at the stand-in time),
this prints for each dataset and seed the model's test HR@10 / NDCG@10 beside both baselines,
with the training time; then the mean ± sd and the model's ratio to the heuristic.

    python bench/repeat_logs.py [--datasets sample,tmall] [--seeds 3] [--tmall ../shared/data/tmall-ijcai15-sample]
        [--model '{"repeat_mix": false}']

It also prints the share of test targets the user had met before: no ranking that only reorders
earlier items can score an NDCG@10 above it (every such target at rank 1), so a ratio to the
heuristic above (share / heuristic) needs targets never met before. ``--model`` passes model
settings (e.g. the repeat path as an added term instead of the mixture, for comparison).

``sample`` is the bundled sample dataset; ``tmall`` is the Tmall IJCAI-15 sample (13k click, cart,
purchase and favorite events, dates as %m%d), read from ``--tmall`` and never copied.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TMALL = REPO.parent / "shared" / "data" / "tmall-ijcai15-sample"


def build(ws_dir: Path, name: str, tmall: Path) -> None:
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.ingest.sample import ensure_sample_dataset
    from core.store.workspace import Workspace

    ws = Workspace(ws_dir)
    if name == "sample":
        ensure_sample_dataset(ws)
        return
    codes = {"0": "click", "1": "cart", "2": "purchase", "3": "favorite"}
    ingest(ws, tmall / "data_sample.csv", None, IngestOptions(name="tmall", behavior_codes=codes, time_format="%m%d"))


def met_before(rec) -> float:  # type: ignore[no-untyped-def]
    """The share of test targets whose item is among the user's earlier events."""
    from core.data.batches import seen_items

    data, split = rec.data_, rec.split_
    seen = seen_items(data, split.users, split.test_pos)
    hits = [int(data.item[p]) in set(s.tolist()) for p, s in zip(split.test_pos, seen)]
    return sum(hits) / max(1, len(hits))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="sample,tmall")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tmall", type=Path, default=TMALL)
    p.add_argument("--threads", type=int)
    p.add_argument("--model", type=json.loads, default={}, help="model settings as JSON")
    args = p.parse_args()
    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws_dir = Path(tempfile.mkdtemp(prefix="repeat-ws-"))
    print("| dataset | seed | model HR@10 | model NDCG@10 | recent items NDCG@10 | popularity NDCG@10 | train s |")
    print("|---|---|---|---|---|---|---|")
    summary = []
    for name in args.datasets.split(","):
        build(ws_dir, name, args.tmall)
        ws = Workspace(ws_dir)
        events, items = ws.events(name), ws.items(name)
        ndcg, hr, secs = [], [], []
        bars: dict = {}
        for seed in range(args.seeds):
            train = {"seed": seed, **({"threads": args.threads} if args.threads else {})}
            started = time.perf_counter()
            rec = Recommender(model=args.model, train=train).fit(events, items, cache_dir=ws_dir / "cache")
            secs.append(time.perf_counter() - started)
            out = rec.evaluate("test")
            bars = out["baselines"]
            ndcg.append(out["NDCG@10"])
            hr.append(out["HR@10"])
            recent = bars["recent_items"]["NDCG@10"] if bars["recent_items"] else float("nan")
            print(
                f"| {name} | {seed} | {out['HR@10']:.4f} | {out['NDCG@10']:.4f} | {recent:.4f} | "
                f"{bars['popularity']['NDCG@10']:.4f} | {secs[-1]:.0f} |",
                flush=True,
            )
        summary.append((name, ndcg, hr, secs, bars, out["label"], met_before(rec)))
    print()
    for name, ndcg, hr, secs, bars, label, met in summary:
        sd = statistics.stdev(ndcg) if len(ndcg) > 1 else 0.0
        recent = bars["recent_items"] or {"NDCG@10": float("nan"), "HR@10": float("nan")}
        ratio = statistics.mean(ndcg) / recent["NDCG@10"]
        print(
            f"{name}: model NDCG@10 {statistics.mean(ndcg):.4f} ± {sd:.4f}, HR@10 {statistics.mean(hr):.4f} "
            f"({len(ndcg)} seeds, median train {statistics.median(secs):.0f} s); recent items NDCG@10 "
            f"{recent['NDCG@10']:.4f} HR@10 {recent['HR@10']:.4f}; "
            f"popularity NDCG@10 {bars['popularity']['NDCG@10']:.4f}; model / recent items = {ratio:.2f}x"
        )
        print(
            f"  test targets met before: {met:.2f}, the most any ranking of earlier items alone can reach "
            f"({met / recent['NDCG@10']:.2f}x the heuristic)"
        )
        print(f"  protocol: {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
