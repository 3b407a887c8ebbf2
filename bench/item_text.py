"""What item text from an events file's descriptive columns costs an ingest.

Generates a REES46-like CSV log (seeded: ``--rows`` events over ``--items`` items, with
category_id, category_code, brand and price repeated per event and a user_session column that
changes within an item), then ingests it with ``item_text_columns`` ``auto`` and ``none``,
alternated, ``--repeat`` times each, each into a fresh workspace, and prints the median seconds of
each, their ratio, and what ``auto`` chose.

    python bench/item_text.py [--rows 1000000] [--items 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def generate(path: Path, rows: int, items: int) -> None:
    import duckdb

    duckdb.sql(f"""
        COPY (SELECT
          TIMESTAMP '2019-10-01 00:00:00' + to_seconds(r) AS event_time,
          ['view', 'view', 'view', 'cart', 'purchase'][1 + (hash(r * 3) % 5)::BIGINT] AS event_type,
          (1000 + hash(r * 7) % {items})::BIGINT AS product_id,
          (2053013550 + (hash(r * 7) % {items}) % 300)::BIGINT AS category_id,
          ['electronics.smartphone', 'appliances.kitchen.kettle', 'computers.notebook', 'apparel.shoes']
            [1 + ((hash(r * 7) % {items}) % 4)::BIGINT] AS category_code,
          'brand' || ((hash(r * 7) % {items}) % 900) AS brand,
          round(5 + ((hash(r * 7) % {items}) % 1000) * 1.37, 2) AS price,
          (500000 + hash(r * 11) % ({rows} // 16 + 1))::BIGINT AS user_id,
          'sess' || (r // 7) AS user_session
        FROM range({rows}) t(r)) TO '{path}' (HEADER, DELIMITER ',')
    """)


def ingest_seconds(path: Path, mode: str) -> tuple[float, dict[str, object]]:
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bl-bench-item-text-") as root:
        started = time.perf_counter()
        report = ingest(Workspace(root), path, options=IngestOptions(name="rees", item_text_columns=mode))
        return time.perf_counter() - started, report.item_text or {}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bl-bench-rees-") as folder:
        path = Path(folder) / "rees.csv"
        generate(path, args.rows, args.items)
        times: dict[str, list[float]] = {"none": [], "auto": []}
        chosen: dict[str, object] = {}
        for _ in range(args.repeat):
            for mode in times:
                seconds, described = ingest_seconds(path, mode)
                times[mode].append(seconds)
                chosen = described if mode == "auto" else chosen
    none, auto = statistics.median(times["none"]), statistics.median(times["auto"])
    print(f"{args.rows:,} rows, {args.items:,} items, {args.repeat} runs each (medians)")
    print(f"  item text none: {none:.2f} s   auto: {auto:.2f} s   auto / none: {auto / none:.2f}x")
    print(f"  auto read {chosen.get('columns')} for {chosen.get('items')} items; left out {chosen.get('left_out')}")
    print(f"  template: {chosen.get('template')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
