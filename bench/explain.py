"""Explanation speed and faithfulness on the bundled sample data (default configuration), on this CPU.

    python bench/explain.py [--pairs 20] [--users 500] [--quick] [--threads 2] [--workspace DIR] [--epochs N]

Trains the default configuration on ``sample_data`` once (run ``bench-explain-e<epochs>-<digest>``,
the digest hashing the model and training defaults: a rerun reuses it, a changed default retrains).
Pairs: the users whose histories are closest to 50 events, each with its top-1 item, target
``fused`` (the run's default weights). Per pair: each method's own runtime (the deletion curves
for AOPC timed apart; IG on the engagement target too, for contrast), token LIG of the candidate's
text (encoder loaded), ``shap.KernelExplainer`` at default settings (events as features, a missing
event = the mask token, background = all masked) against our SHAP, IG completeness, AOPC against
random orders. The Explain page for new users: (a) run-level calls, each loading the run:
recommend_fused top-10 + explain_run ig + counterfactual_run + summarize; (b) as the page does it,
with its cached model and candidates. Global influence over ``--users`` users (loo, swap), seconds.
Figures are medians with the min beside them (the floor when other processes compete for the cores:
the load average is printed). A table goes to stdout, JSON to ``--out`` (bench/out/explain.json;
--quick: explain-quick.json).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HISTORY = 50
K = 10
METHODS = ("ig", "loo", "shap", "attention")
# figure -> (label, target: at most this or None, unit); medians over the pairs unless the label says otherwise
FIGURES: dict[str, tuple[str, float | None, str]] = {
    "ig_ms": ("IG (fused, default settings)", 150, "ms"),
    "ig_steps": ("  IG steps used (tolerance 1%)", None, ""),
    "ig_engagement_ms": ("IG on the engagement target", None, "ms"),
    "loo_ms": ("leave-one-out", 100, "ms"),
    "shap_ms": ("SHAP (our default)", 2000, "ms"),
    "attention_ms": ("attention", None, "ms"),
    "tokens_ms": ("token LIG (candidate text)", None, "ms"),
    "tokens_rel_delta": ("  its |completeness delta| / gap", None, ""),
    "kernel_ms": ("shap.KernelExplainer", None, "ms"),
    "kernel_over_shap": ("KernelExplainer / our SHAP", None, "x"),
    "kernel_shap_corr": ("corr(Kernel, our SHAP values)", None, "r"),
    "ig_rel_delta": ("IG |completeness delta| / gap", None, ""),
    "ig_rel_delta_max": ("  the same, max over pairs", None, ""),
    "ig_aopc_ratio": ("IG AOPC / random AOPC (of medians)", None, "x"),
    "loo_aopc_ratio": ("LOO AOPC / random AOPC (of medians)", None, "x"),
    "page_run_calls_s": ("Explain page, run-level calls", 1.5, "s"),
    "page_cached_model_s": ("Explain page, cached model", 1.5, "s"),
    "influence_loo_s": ("global influence loo, {users} users", 30, "s"),
    "influence_swap_s": ("global influence swap, {users} users", 30, "s"),
}


def defaults_digest() -> str:
    """Short hash of the model and training defaults: a bench run is reused only while they hold."""
    from core.model.config import ModelConfig, TrainConfig

    def table(cls: Any) -> dict[str, Any]:
        return {
            f.name: (
                f.default
                if f.default is not MISSING
                else f.default_factory()
                if f.default_factory is not MISSING
                else None
            )
            for f in fields(cls)
        }

    blob = json.dumps({"model": table(ModelConfig), "train": table(TrainConfig)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def bench_run(ws: Any, epochs: int | None, threads: int) -> tuple[str, float]:
    """The run id of the default configuration (trained unless a finished one is there), training seconds."""
    from core.runs.records import DONE, list_runs
    from core.runs.train import train_run

    digest, cap = defaults_digest(), epochs or "default"
    tag = f"bench-explain-e{cap}-{digest}"
    runs = list_runs(ws)
    # bench/influence.py's seed-0 run in the same workspace is the same configuration
    for reuse in (tag, f"bench-influence-s0-e{cap}-{digest}"):
        if len(runs) and ((runs["run_id"] == reuse) & (runs["status"] == DONE)).any():
            return reuse, 0.0
    train = {"threads": threads} | ({"epochs": epochs} if epochs else {})
    start = time.perf_counter()
    train_run(ws, "sample", {"device": "cpu", "train": train}, run_id=tag)
    return tag, time.perf_counter() - start


def pick_pairs(rec: Any, n: int) -> list[tuple[str, str]]:
    """(stored user, top-1 item) of the ``n`` users whose histories are closest to HISTORY events."""
    lengths = np.diff(rec.data_.offsets)
    order = np.lexsort((np.arange(len(lengths)), np.abs(lengths - HISTORY)))[:n]
    users = [str(rec.data_.users[u]) for u in order]
    return [(u, str(rec.recommend(u, 1)["item_id"].iloc[0])) for u in users]


def time_pair(rec: Any, user: str, item: str, titles: Any) -> dict[str, Any]:
    """Every method on one pair: runtimes, IG completeness, AOPC ratios, token LIG, KernelExplainer."""
    from core.explain import Labels, explain
    from core.explain.tokens import token_attributions

    row: dict[str, Any] = {"user": user, "item": item}
    for method in METHODS:
        exp = explain(rec, user, item, method, "fused", labels=Labels(titles))
        row[f"{method}_ms"] = exp.runtime_ms
        if method in ("ig", "loo"):
            row[f"{method}_aopc"], row[f"{method}_aopc_random"] = exp.aopc, exp.aopc_random
        if method == "ig":
            row["ig_rel_delta"], row["ig_steps"] = exp.relative_delta, exp.details["steps"]
        if method == "shap":
            shap_values, row["shap_details"] = np.asarray(exp.attributions), exp.details
    row["n_events"] = len(exp.events)
    row["ig_engagement_ms"] = explain(rec, user, item, "ig", "engagement").runtime_ms  # a smooth target, for contrast
    (tok,) = token_attributions(rec, user, item, "fused", titles=titles)
    row.update(
        tokens_ms=tok.runtime_ms,
        tokens_n=len(tok.tokens),
        tokens_steps=tok.details["steps"],
        tokens_rel_delta=tok.relative_delta,
    )
    kernel_ms, kernel = kernel_shap(rec, user, item)
    row.update(
        kernel_ms=kernel_ms,
        kernel_over_shap=kernel_ms / row["shap_ms"],
        kernel_shap_corr=float(np.corrcoef(kernel, shap_values)[0, 1]),
    )
    return row


def kernel_shap(rec: Any, user: str, item: str) -> tuple[float, np.ndarray]:
    """``shap.KernelExplainer`` at default settings: ms and values [n]."""
    import shap
    import torch

    from core.explain.subject import subject_for

    scorer = subject_for(rec, user, item, "fused").scorer
    n = scorer.n_events

    def value(z: np.ndarray) -> np.ndarray:  # [S, n], 1 = present -> [S]
        return scorer.score_removed(torch.from_numpy(np.asarray(z) < 0.5)).double().numpy()

    start = time.perf_counter()
    values = shap.KernelExplainer(value, np.zeros((1, n))).shap_values(np.ones((1, n)), silent=True)
    return (time.perf_counter() - start) * 1000, np.asarray(values, dtype=np.float64).reshape(-1)


def raw_ids(ws: Any, stored: list[str]) -> dict[str, str]:
    """{stored user ID: original ID} for the sample dataset (pseudonymized on ingest or not)."""
    import pandas as pd

    from core.ingest.sample import SAMPLE_DATASET, SAMPLE_EVENTS

    raw = sorted(pd.read_csv(SAMPLE_EVENTS, usecols=["user_id"], dtype=str)["user_id"].unique())
    mapped = ws.pseudonymize(raw) if ws.dataset(SAMPLE_DATASET).pseudonymized else raw
    lookup = dict(zip(mapped, raw))
    return {s: lookup[s] for s in stored}


def page_times(ws: Any, run_id: str, rec: Any, users: list[str]) -> list[dict[str, float]]:
    """Seconds of the Explain page's core calls per new user, by part: run-level calls, then the cached model."""
    from core.explain import explain
    from core.explain.counterfactual import counterfactual_set
    from core.explain.subject import Labels, titles_of
    from core.runs.explain import counterfactual_run, explain_run
    from core.runs.fusion import default_weights, recommend_fused, recommendation_table, run_candidates
    from core.runs.run import open_run

    summarize = _summarize() or (lambda exp: None)
    weights = default_weights(open_run(ws, run_id))[1] or {"engagement": 1.0}
    held = open_run(ws, run_id)  # the page keeps one handle per run: candidates and titles are read once
    cands, meta = run_candidates(held, "all")
    titles, out = titles_of(ws.items("sample")), []
    for stored, raw in raw_ids(ws, users).items():
        row: dict[str, Any] = {"user": raw}
        # each run_* call opens a fresh handle: the model loads again, as a new page session would
        top = _timed(row, "run_top", recommend_fused, open_run(ws, run_id), raw, K, weights)
        item = str(top["item_id"].iloc[0])
        exp = _timed(row, "run_explain", explain_run, open_run(ws, run_id), raw, item, "ig", "fused", weights)
        _timed(row, "run_counterfactual", counterfactual_run, open_run(ws, run_id), raw, item, K)
        _timed(row, "run_summary", summarize, exp)
        _timed(row, "cached_top", recommendation_table, held, cands, meta["user_ids"].index(stored), K, weights)
        labels = Labels(titles, raw, run_id)
        exp = _timed(row, "cached_explain", explain, rec, stored, item, "ig", "fused", weights=weights, labels=labels)
        _timed(row, "cached_counterfactual", counterfactual_set, rec, stored, item, K, labels=Labels(titles))
        _timed(row, "cached_summary", summarize, exp)
        row["ig_steps"] = exp.details["steps"]
        row["page_run_calls_s"] = sum(v for k, v in row.items() if k.startswith("run_"))
        row["page_cached_model_s"] = sum(v for k, v in row.items() if k.startswith("cached_"))
        out.append(row)
    return out


def _timed(row: dict[str, Any], key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its seconds stored in ``row[key]``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    row[key] = time.perf_counter() - start
    return result


def _summarize() -> Any:
    """``core.explain.summary.summarize`` when that module exists (it is optional), else None."""
    if importlib.util.find_spec("core.explain.summary") is None:
        return None
    from core.explain.summary import summarize

    return summarize


def influence_times(rec: Any, ws: Any, run_id: str, users: int) -> dict[str, float]:
    """Seconds of global influence over ``users`` users, methods loo and swap (no ablation)."""
    from core.explain.influence.report import InfluenceSettings, global_influence
    from core.runs.influence import item_categories
    from core.runs.run import open_run

    categories, out = item_categories(open_run(ws, run_id)), {}
    for method in ("loo", "swap"):
        start = time.perf_counter()
        global_influence(rec, InfluenceSettings(users, method), categories=categories, ablation=False)
        out[f"influence_{method}_s"] = time.perf_counter() - start
    return out


def figures(rows: list[dict[str, Any]], page: list[dict[str, float]], influence: dict[str, float]) -> dict[str, Any]:
    """Median and min over the pairs (page users) of every figure, with its target; ``ok`` judges the median."""

    def stats(key: str, source: list[dict[str, Any]]) -> tuple[float, float]:
        values = [r[key] for r in source if r.get(key) is not None and np.isfinite(r[key])]
        return (float(statistics.median(values)), float(min(values))) if values else (float("nan"),) * 2

    values = {k: stats(k, rows) for k in FIGURES if rows and k in rows[0]}
    values.update({k: stats(k, page) for k in ("page_run_calls_s", "page_cached_model_s")})
    worst = max((r["ig_rel_delta"] for r in rows if r["ig_rel_delta"] is not None), default=float("nan"))
    values["ig_rel_delta_max"] = (worst, worst)
    for m in ("ig", "loo"):  # a ratio of medians: one pair's random AOPC can be near 0 or negative
        ratio = stats(f"{m}_aopc", rows)[0] / stats(f"{m}_aopc_random", rows)[0]
        values[f"{m}_aopc_ratio"] = (ratio, float("nan"))
    values.update({k: (v, v) for k, v in influence.items()})
    return {
        k: {
            "median": values[k][0],
            "min": values[k][1],
            "target": target,
            "unit": unit,
            "ok": None if target is None else bool(values[k][0] <= target),
        }
        for k, (_, target, unit) in FIGURES.items()
    }


def print_table(figs: dict[str, Any], users: int) -> None:
    print(f"\n{'figure':<38} {'median':>10}   {'min':>9}    {'target':>8}")
    for key, fig in figs.items():
        target = "" if fig["target"] is None else f"<= {fig['target']:g}"
        mark = "" if fig["ok"] is None else ("  ok" if fig["ok"] else "  MISSED")
        label = FIGURES[key][0].format(users=users)
        low = f"{fig['min']:>9.4g}{fig['unit']:<2}" if fig["unit"] in ("ms", "s") else " " * 11
        print(f"{label:<38} {fig['median']:>10.4g}{fig['unit']:<2} {low} {target:>8}{mark}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=20, help="(user, top-1 item) pairs timed")
    p.add_argument("--users", type=int, default=500, help="users of the global influence runs")
    p.add_argument("--page-users", type=int, help="new users of the Explain page timing (default: --pairs)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 3 pairs, 20 users, 2 page users")
    p.add_argument("--epochs", type=int, help="cap the epochs (default: the default configuration's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workspace", type=Path, default=REPO / "bench" / "out" / "explain-ws")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.users, args.epochs = min(args.pairs, 3), min(args.users, 20), args.epochs or 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_path = args.out or REPO / "bench" / "out" / ("explain-quick.json" if args.quick else "explain.json")
    return run(args, out_path)


def run(args: argparse.Namespace, out_path: Path) -> int:
    import torch

    from core.explain.subject import titles_of
    from core.ingest.sample import ensure_sample_dataset
    from core.runs.run import open_run
    from core.store.workspace import Workspace

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    ws = Workspace(args.workspace)
    ensure_sample_dataset(ws)
    run_id, train_s = bench_run(ws, args.epochs, args.threads)
    rec = open_run(ws, run_id, "cpu").recommender()
    titles = titles_of(ws.items("sample"))
    print(
        f"run {run_id} ({f'trained in {train_s:.0f} s' if train_s else 'reused'}); {os.cpu_count()} cores, "
        f"{args.threads} torch threads, load average {load_before[0]:.2f}",
        flush=True,
    )
    pairs = pick_pairs(rec, args.pairs + 1)
    time_pair(rec, *pairs[0], titles)  # warm-up: imports, encoder load, first-call kernels (not counted)
    rows = []
    for user, item in pairs[1:]:
        rows.append(time_pair(rec, user, item, titles))
        print(
            f"  pair {len(rows)}/{args.pairs}: {rows[-1]['n_events']} events, IG {rows[-1]['ig_ms']:.0f} ms, "
            f"SHAP {rows[-1]['shap_ms']:.0f} ms, Kernel {rows[-1]['kernel_ms']:.0f} ms",
            flush=True,
        )
    others = [str(u) for u in rec.data_.users if str(u) not in {u for u, _ in pairs}]
    page_users = list(np.random.default_rng(0).choice(others, args.page_users or args.pairs, replace=False))
    page = page_times(ws, run_id, rec, [str(u) for u in page_users])
    influence = influence_times(rec, ws, run_id, args.users)
    context = {
        "run": run_id,
        "train_s": train_s,
        "pairs": len(rows),
        "users": args.users,
        "threads": args.threads,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "summary": _summarize() is not None,
        "quick": args.quick,
    }
    figs = figures(rows, page, influence)
    print_table(figs, args.users)
    parts = {k: statistics.median(r[k] for r in page) for k in page[0] if k.startswith(("run_", "cached_"))}
    print("Explain page parts (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    print(
        f"load average before {load_before[0]:.2f}, after {context['load_after'][0]:.2f}; "
        f"summary {'included' if context['summary'] else 'not available'}"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps({"context": context, "figures": figs, "pairs": rows, "page": page}, indent=1, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
