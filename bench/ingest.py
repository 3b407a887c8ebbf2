"""Ingest benchmark: BehaviorLens against pandas.read_csv + row-by-row validation.

Generates 1M- and 5M-event CSV logs (deterministic; ~1% rejected rows and some
exact duplicates), then runs every case in its own fresh subprocess and prints
rows/s and peak memory (the child's VmHWM) for:

- behaviorlens: ``core.ingest.pipeline.ingest`` end to end (sniff, read, parse, validate,
  pseudonymize, report, write to a fresh workspace). ``s`` is the ingest call;
  ``proc s`` adds interpreter start-up and imports; ``cpu s`` is user+system CPU
  time of the call over all threads (a check on wall times taken on a busy machine).
- pandas: ``pd.read_csv(dtype=str)`` then a Python loop doing the same checks
  (IDs, null tokens, ID length, epoch/ISO timestamps, behavior synonyms, numeric
  value and rating range, exact duplicates, HMAC pseudonyms, counts and examples).
  It does not write anything. On logs over ``--baseline-full`` rows the loop
  stops after ``--baseline-limit`` seconds and its time is extrapolated linearly
  from the rows it checked (marked ``~``).

    python bench/ingest.py [--sizes 1000000,5000000] [--repeat 1] [--baseline-limit 60]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NULLS = frozenset({"", "nan", "null", "none", "na", "n/a", "nil", "undefined"})


def generate(path: Path, n: int) -> None:
    """A CSV log of ``n`` events: n/20 users, n/10 items, 5 behaviors, ~1% bad rows, 0.2% exact copies."""
    import duckdb

    users, items = max(1, n // 20), max(1, n // 10)
    duckdb.sql(f"""
        COPY (SELECT
            CASE WHEN k % 331 = 0 THEN '' ELSE 'user' || (hash(k) % {users}) END AS user_id,
            'item' || (hash(k * 7 + 1) % {items}) AS item_id,
            CASE WHEN k % 409 = 0 THEN 'not-a-time' ELSE CAST(1700000000 + (k // 3) AS VARCHAR) END AS timestamp,
            ['pv','pv','pv','pv','pv','pv','cart','cart','fav','buy','buy','rate']
                [CAST(1 + hash(k * 13) % 12 AS BIGINT)] AS behavior,
            CASE WHEN hash(k * 13) % 12 = 11
                 THEN CAST(1 + hash(k) % (CASE WHEN k % 97 = 0 THEN 9 ELSE 5 END) AS VARCHAR) END AS value
          FROM (SELECT CASE WHEN r % 500 = 1 THEN r - 1 ELSE r END AS k, r FROM range({n}) t(r)) ORDER BY r)
        TO '{path}' (HEADER, DELIMITER ',')
    """)


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_behaviorlens(path: Path) -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest
    from core.store.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bl-bench-ws-") as root:
        ws = Workspace(root)
        started, cpu0 = time.perf_counter(), cpu_s()
        report = ingest(ws, path, options=IngestOptions(name="bench"))
        seconds, cpu = time.perf_counter() - started, cpu_s() - cpu0
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "rows": report.rows_read,
        "accepted": report.rows_accepted,
        "rejected": report.rejected_by_reason,
        "duplicates": report.duplicates,
        "peak_mb": peak_mb(),
    }


def _epoch(raw: str) -> datetime | None:
    try:
        x = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.replace(" UTC", "+00:00"))
        except ValueError:
            return None
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    for scale in (1e17, 1e14, 1e11):
        if abs(x) >= scale:
            x /= {1e17: 1e9, 1e14: 1e6, 1e11: 1e3}[scale]
            break
    if not math.isfinite(x) or not -2_208_988_800 <= x <= 7_258_118_400:
        return None
    return datetime.fromtimestamp(x, timezone.utc).replace(tzinfo=None)


def _reason(u: str, i: str, ts: str, b: str, v: str, labels: dict[str, str]) -> tuple[str | None, tuple]:
    u, i, ts, v = u.strip(), i.strip(), ts.strip(), v.strip()
    if u.lower() in NULLS:
        return "missing_user_id", ()
    if i.lower() in NULLS:
        return "missing_item_id", ()
    if len(u) > 256 or len(i) > 256:
        return "id_too_long", ()
    if not ts:
        return "missing_timestamp", ()
    when = _epoch(ts)
    if when is None:
        return "bad_timestamp", ()
    value = None
    if v:
        try:
            value = float(v)
        except ValueError:
            return "non_numeric_value", ()
        if not math.isfinite(value):
            return "non_numeric_value", ()
    if b not in labels:
        from core.ingest.mapping import canonical_behavior

        labels[b] = canonical_behavior(b) if b.strip() else None
    beh = labels[b]
    if beh is None:
        return "missing_behavior", ()
    if beh == "rate" and value is None:
        return "missing_rating", ()
    if beh in ("rate", "review") and value is not None and not 0 <= value <= 5:
        return "rating_out_of_range", ()
    return None, (u, i, when, beh, value)


def child_pandas(path: Path, limit_s: float, full_rows: int) -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    import pandas as pd

    started, cpu0 = time.perf_counter(), cpu_s()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    read_s = time.perf_counter() - started
    keyed = hmac.new(secrets.token_bytes(32), digestmod=hashlib.sha256)
    reasons: Counter[str] = Counter()
    examples: dict[str, list[int]] = {}
    seen: set[tuple] = set()
    pseudo: dict[str, str] = {}
    labels: dict[str, str] = {}
    accepted: list[tuple] = []
    dupes = checked = 0
    bounded = len(frame) > full_rows
    loop_start = time.perf_counter()
    for checked, (u, i, ts, b, v) in enumerate(frame.itertuples(index=False, name=None), 1):
        reason, event = _reason(u, i, ts, b, v, labels)
        if reason is not None:
            reasons[reason] += 1
            examples.setdefault(reason, []).append(checked) if len(examples.get(reason, [])) < 5 else None
            continue
        dupes += event in seen
        seen.add(event)
        if event[0] not in pseudo:
            mac = keyed.copy()
            mac.update(event[0].encode())
            pseudo[event[0]] = "u_" + mac.hexdigest()[:16]
        accepted.append((pseudo[event[0]],) + event[1:])
        if bounded and checked % 20_000 == 0 and time.perf_counter() - loop_start > limit_s:
            break
    loop_s = time.perf_counter() - loop_start
    scale = len(frame) / max(checked, 1)
    total = read_s + loop_s * scale
    cpu = cpu_s() - cpu0  # read_csv plus the loop (the loop part extrapolated like the time)
    cpu += (scale - 1) * loop_s * cpu / (read_s + loop_s)
    return {
        "seconds": total,
        "cpu_s": cpu,
        "rows": len(frame),
        "checked": checked,
        "extrapolated": checked < len(frame),
        "read_s": read_s,
        "rejected": dict(reasons),
        "duplicates": dupes,
        "peak_mb": peak_mb(),
    }


def run_child(kind: str, path: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        str(path),
        "--baseline-limit",
        str(args.baseline_limit),
        "--baseline-full",
        str(args.baseline_full),
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} on {path.name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["proc_s"] = time.perf_counter() - started
    return result


def median_of(runs: list[dict[str, object]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def print_table(results: dict[tuple[int, str], list[dict[str, object]]], repeat: int) -> None:
    agg = f"median of {repeat}" if repeat > 1 else "1 run"
    print(
        f"\n{'rows':>10} {'tool':<13} {'s':>8} {'cpu s':>7} {'proc s':>8} {'rows/s':>12} {'peak MB':>9} "
        f"{'vs pandas':>10}   ({agg})"
    )
    for (n, kind), runs in sorted(results.items()):
        secs = median_of(runs, "seconds")
        base = results.get((n, "pandas"))
        ratio = f"{median_of(base, 'seconds') / secs:9.1f}x" if base and kind == "behaviorlens" else ""
        mark = "~" if runs[0].get("extrapolated") else " "
        print(
            f"{n:>10,} {kind:<13} {mark}{secs:7.2f} {median_of(runs, 'cpu_s'):7.2f} {median_of(runs, 'proc_s'):8.2f} "
            f"{mark}{n / secs:11,.0f} {median_of(runs, 'peak_mb'):9.0f} {ratio:>10}"
        )
    print("  ~ = pandas loop stopped at the time limit and extrapolated from the rows it checked")


def check_targets(results: dict[tuple[int, str], list[dict[str, object]]]) -> None:
    print("\ntargets (2-core machine): >= 1M rows/s, >= 5x pandas, <= 1.5 GB peak at 5M rows")
    for (n, kind), runs in sorted(results.items()):
        if kind != "behaviorlens":
            continue
        rate = n / median_of(runs, "seconds")
        base = results.get((n, "pandas"))
        ratio = median_of(base, "seconds") / median_of(runs, "seconds") if base else float("nan")
        peak = median_of(runs, "peak_mb")
        print(
            f"  {n:>10,} rows: {rate:,.0f} rows/s [{'ok' if rate >= 1e6 else 'MISSED'}], "
            f"{ratio:.1f}x pandas [{'ok' if ratio >= 5 else 'MISSED'}], peak {peak:,.0f} MB "
            f"[{'ok' if peak <= 1536 or n < 5_000_000 else 'MISSED'}]"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,5000000")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--baseline-limit", type=float, default=60.0, help="seconds the pandas loop may run on big logs")
    p.add_argument(
        "--baseline-full", type=int, default=1_000_000, help="logs up to this size run the pandas loop fully"
    )
    p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "behaviorlens-bench"))
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, path = args.child[0], Path(args.child[1])
        out = (
            child_behaviorlens(path)
            if kind == "behaviorlens"
            else child_pandas(path, args.baseline_limit, args.baseline_full)
        )
        print(json.dumps(out))
        return
    print(
        f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
        f"{os.cpu_count()} CPUs"
    )
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[int, str], list[dict[str, object]]] = {}
    for n in (int(s) for s in args.sizes.split(",")):
        path = data / f"events_{n}.csv"
        if not path.is_file():
            started = time.perf_counter()
            generate(path, n)
            print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - started:.1f}s")
        kinds = ["behaviorlens"] + ([] if args.no_baseline else ["pandas"])
        for kind in kinds:
            runs = []
            for _ in range(args.repeat if kind == "behaviorlens" else 1):
                runs.append(run_child(kind, path, args))
                r = runs[-1]
                print(
                    f"  {n:,} {kind}: {r['seconds']:.2f}s (cpu {r['cpu_s']:.2f}s, load {os.getloadavg()[0]:.2f}), "
                    f"rejected {r['rejected']}, duplicates {r['duplicates']}",
                    flush=True,
                )
            results[(n, kind)] = runs
    print_table(results, args.repeat)
    check_targets(results)
    print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
