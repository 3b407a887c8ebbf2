"""Behavior text benchmark on MovieLens ml-latest-small: the model without and with the events' own text.

Data: ratings.csv (every rating a ``rate`` event with its value), tags.csv (every tag a ``tag`` event whose
``text`` is the tag, e.g. "funny", "Highly quotable"), movies.csv (title + genres as the item text, only the
movies with an event). The data is for research use under its own license and is never copied into the
repository: it is read from ``--data`` and ingested into a temporary workspace (its derived CSVs in a temporary
folder), both deleted at the end.

Variants (``--variants``, names from :data:`VARIANTS`, run in the order given, each from the same seed with the
same settings and epoch budget): ``no-text`` (``model.use_event_text`` false: tags are events whose text is
not read) and ``event-text`` (true: each tag's text, embedded by the item encoder through the cache, is added to
its event's token), the default pair; ``id-only`` (no text at all: item IDs only), ``lora`` and ``full`` (event
text, and the encoder fine-tuned with LoRA adapters or in every weight, :mod:`core.model.finetune`).

Protocol: the default one, ``rec.evaluate("test")``: each user's events sorted by (timestamp, item ID), the last
event (any behavior, unless ``--target-behavior``) is the test target, the one before it validation; every item
scored, earlier items excluded or not as the data's repeat rate decides (printed); HR@10 and NDCG@10 of the test
event, and the median CPU wall time of a training epoch. Every planned epoch runs (``--epochs``) and the best
validation epoch is kept, as in any run.

    python bench/text.py [--seeds 3] [--epochs 40] [--threads 2] [--variants no-text,event-text]
        [--max-users N] [--target-behavior rate] [--config '{"train": {"batch_size": 64}}']
        [--data ../shared/data/ml-latest-small] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import schema as S  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ml-latest-small"
NAME = "mlsmall"
TAG = "tag"
METRICS = ("NDCG@10", "HR@10")
# variant name -> settings merged over the run's (model / train sections); a new variant is one entry here
VARIANTS: dict[str, dict[str, Any]] = {
    "id-only": {"model": {"use_text": False, "use_event_text": False}},
    "no-text": {"model": {"use_event_text": False}},
    "event-text": {"model": {"use_event_text": True}},
    "lora": {"model": {"use_event_text": True}, "encoder": {"finetune": "lora"}},
    "full": {"model": {"use_event_text": True}, "encoder": {"finetune": "full"}},
}
DEFAULT_VARIANTS = "no-text,event-text"


# -- data ------------------------------------------------------------------------------------------------------
def read_events(data_dir: Path, max_users: int | None = None) -> pd.DataFrame:
    """ratings.csv as ``rate`` events (value = rating) and tags.csv as ``tag`` events (text = tag), in the data
    contract; ``max_users``: only the first N user IDs (ascending)."""
    ratings = pd.read_csv(data_dir / "ratings.csv")
    tags = pd.read_csv(data_dir / "tags.csv", keep_default_na=False)  # the tag "NA" is a tag
    if max_users is not None:
        keep = np.sort(ratings["userId"].unique())[:max_users]
        ratings, tags = ratings[ratings["userId"].isin(keep)], tags[tags["userId"].isin(keep)]
    rate = pd.DataFrame(
        {
            S.USER_ID: ratings["userId"].astype(str),
            S.ITEM_ID: ratings["movieId"].astype(str),
            S.TIMESTAMP: ratings["timestamp"].astype(np.int64),
            S.BEHAVIOR: "rate",
            S.VALUE: ratings["rating"].astype(float),
            S.TEXT: None,
        }
    )
    tag = pd.DataFrame(
        {
            S.USER_ID: tags["userId"].astype(str),
            S.ITEM_ID: tags["movieId"].astype(str),
            S.TIMESTAMP: tags["timestamp"].astype(np.int64),
            S.BEHAVIOR: TAG,
            S.VALUE: np.nan,
            S.TEXT: tags["tag"].astype(str),
        }
    )
    return pd.concat([rate, tag], ignore_index=True)


def read_movies(data_dir: Path, keep: set[str]) -> pd.DataFrame:
    """movies.csv as item_id, title, genres ("A, B"), only the movies in ``keep``."""
    movies = pd.read_csv(data_dir / "movies.csv", dtype={"movieId": str})
    movies = movies[movies["movieId"].isin(keep)]
    genres = movies["genres"].str.replace("|", ", ", regex=False).replace("(no genres listed)", "")
    return pd.DataFrame({"item_id": movies["movieId"], "title": movies["title"], "genres": genres})


def build_dataset(data_dir: Path, workspace: Path, max_users: int | None = None) -> dict[str, Any]:
    """Ingest ml-latest-small (ratings and tags as events, movies as items) into ``workspace`` as dataset
    :data:`NAME`; -> the ingest's counts (events, users, items, tag events, distinct tags)."""
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    events = read_events(data_dir, max_users)
    tmp = Path(tempfile.mkdtemp(prefix="mlsmall-src-"))
    try:  # derived copies of the data live only for the ingest
        events.to_csv(tmp / "events.csv", index=False)
        read_movies(data_dir, set(events[S.ITEM_ID])).to_csv(tmp / "items.csv", index=False)
        options = IngestOptions(name=NAME, rating_range=(0.5, 5), keep_ids=True)
        report = ingest(Workspace(workspace), tmp / "events.csv", tmp / "items.csv", options)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tags = events[events[S.BEHAVIOR] == TAG]
    return {
        "events_read": report.rows_read,
        "events_stored": report.rows_accepted,
        "rejected": report.rejected_by_reason,
        "behaviors": report.behaviors,
        "users": report.users,
        "items": report.items,
        "distinct_tags": int(tags[S.TEXT].nunique()),
    }


# -- one run ---------------------------------------------------------------------------------------------------
def settings_for(variant: str, seed: int, epochs: int, threads: int, extra: dict[str, Any]) -> dict[str, Any]:
    """The Recommender settings of one variant: ``extra`` (``--config``), then the variant's own, then the budget."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}: expected some of {', '.join(VARIANTS)}")
    out: dict[str, Any] = {k: v for k, v in extra.items() if k not in ("model", "train")}
    for section in ("model", "train"):
        out[section] = {**extra.get(section, {}), **VARIANTS[variant].get(section, {})}
    if "encoder" in VARIANTS[variant]:  # fine-tuning: the variant's mode over --config's encoder settings
        given = extra.get("encoder")
        base = given if isinstance(given, dict) else {"path": given}
        out["encoder"] = {**base, **VARIANTS[variant]["encoder"]}
    out["train"].update(seed=seed, epochs=epochs, threads=threads)
    out.setdefault("device", "cpu")
    return out


def run_variant(
    variant: str, seed: int, workspace: Path, epochs: int, threads: int, target: str | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """Train one variant in this process and evaluate it on the test events under the default protocol."""
    from core.model.recommender import Recommender
    from core.store.workspace import Workspace

    ws = Workspace(workspace)
    events, items = ws.events(NAME), ws.items(NAME)
    settings = settings_for(variant, seed, epochs, threads, extra)
    rec = Recommender(target_behavior=target, **settings)
    started = time.perf_counter()
    rec.fit(events, items, cache_dir=workspace / "cache" / "embeddings", progress=_epoch_line(variant, seed))
    seconds = time.perf_counter() - started
    out = rec.evaluate("test")
    return {
        "variant": variant,
        "seed": seed,
        **{m: float(out[m]) for m in METRICS},
        "users": out.get("users"),
        "label": out["label"],
        "epochs": len(rec.history_),
        "best_epoch": rec.best_epoch_,
        "epoch_seconds": statistics.median(float(h["seconds"]) for h in rec.history_),
        "fit_seconds": seconds,
        "event_texts": len(rec.data_.texts) - 1,
        "use_event_text": bool(rec.model_.cfg.use_event_text),
    }


def _epoch_line(variant: str, seed: int) -> Any:
    def progress(event: dict[str, Any]) -> None:
        if event.get("event") == "epoch":
            print(
                f"  [{variant} seed {seed}] epoch {event['epoch']}: {event['seconds']:.1f} s, "
                f"valid NDCG@10 {event.get('valid_NDCG@10', float('nan')):.4f}",
                file=sys.stderr,
                flush=True,
            )

    return progress


# -- report ----------------------------------------------------------------------------------------------------
def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def print_table(rows: list[dict[str, Any]], variants: list[str], threads: int) -> None:
    print(f"protocol: {rows[0]['label']} ({rows[0]['users']} users); CPU, torch threads {threads}")
    print("| variant | seeds | NDCG@10 | HR@10 | s/epoch (median) | epochs | best epoch | event texts |")
    print("|---|---|---|---|---|---|---|---|")
    for name in variants:
        mine = [r for r in rows if r["variant"] == name]
        cells = [_fmt([r[m] for r in mine]) for m in METRICS]
        epoch = statistics.median(r["epoch_seconds"] for r in mine)
        best = ", ".join(str(r["best_epoch"]) for r in mine)
        print(
            f"| {name} | {len(mine)} | {' | '.join(cells)} | {epoch:.1f} | {mine[0]['epochs']} | {best} | "
            f"{mine[0]['event_texts'] if mine[0]['use_event_text'] else 'not read'} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 of every variant")
    p.add_argument("--epochs", type=int, default=40, help="epochs of every variant (all of them run)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--max-users", type=int, help="only the first N users (a reduced run)")
    p.add_argument("--target-behavior", help="the held-out event: the last of this behavior (default: last event)")
    p.add_argument("--config", default="{}", help="settings JSON merged under every variant's own")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for name in variants:
        settings_for(name, 0, 1, 1, {})  # an unknown name stops here, before any work
    extra = json.loads(args.config)
    workspace = Path(tempfile.mkdtemp(prefix="mlsmall-ws-"))
    try:
        started = time.perf_counter()
        stats = build_dataset(args.data, workspace, args.max_users)
        print(f"dataset: {json.dumps(stats)}; ingest {time.perf_counter() - started:.1f} s", flush=True)
        rows = [
            run_variant(name, seed, workspace, args.epochs, args.threads, args.target_behavior, extra)
            for seed in range(args.seeds)
            for name in variants
        ]
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    print_table(rows, variants, args.threads)
    if args.json:
        args.json.write_text(json.dumps({"dataset": stats, "runs": rows}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
