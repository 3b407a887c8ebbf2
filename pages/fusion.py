"""The Fusion page: weight sliders, live top-K and metrics, the trade-off curve, weight presets.

    score(u, i) = Σ_k w_k · s_k(u, i),  w_k ≥ 0,  Σ_k w_k = 1,  every signal s_k in [0, 1]

(the formula and the normalization of each signal are documented in ``core.fusion.formula``).
Widgets and layout only: the head outputs of every user are computed once per run, stored in
the run folder and kept by the run's handle (``core.runs.fusion``), so moving a slider re-ranks
arrays (``core.fusion.ranking``) and runs no model. The live panel is a ``st.fragment``:
moving a slider reruns only the panel. Item titles are user data: shown only inside
``st.dataframe`` or through ``plain``, never as Markdown or HTML.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import schema as S
from core.errors import BehaviorLensError, DataError
from core.fusion.formula import FORMULA, SIGNALS, format_weights, normalize_weights
from core.fusion.ranking import Candidates, fused_metrics, user_ranking
from core.runs.fusion import default_weights, list_presets, run_baselines, run_candidates, run_sweep, save_preset
from core.runs.run import Run
from core.views import charts
from pages._shared import get_workspace, pick_run, plain, route_through_frame, show_error

SLIDER = "fusion_w_{}"
REQUEST_KEY = "fusion_request_time"
USER_KEY, K_KEY, AXIS_KEY = "fusion_user", "fusion_k", "fusion_axis"
LAST_KEY, PREV_KEY, LOADED_KEY = "fusion_last", "fusion_prev", "fusion_loaded_run"
PRESET_NAME_KEY, PRESET_PICK_KEY = "fusion_preset_name", "fusion_preset_pick"
DEFAULT_WEIGHTS = {"engagement": 1.0, "rating": 0.0, "popularity": 0.0, "freshness": 0.0}
LIVE_METRICS = (
    ("HR@10", "HR@10"),
    ("NDCG@10", "NDCG@10"),
    ("MRR@10", "MRR@10"),
    ("coverage@10", "Coverage@10"),
    ("mean_popularity@10", "Mean popularity@10"),
)
NORMALIZATION = (
    "Signals, each scaled into [0, 1]: engagement = the softmax probability min-maxed over the user's candidates; "
    "rating = the predicted rating rescaled by the dataset's value range; popularity = log(1 + events) / "
    "log(1 + most events); freshness = time of the item's latest event, min-maxed. Weights are divided by their sum. "
    "Metrics: held-out test event, full ranking; ties rank the smaller item index first."
)


# -- the run ------------------------------------------------------------------------------------
def start_run(run: Run) -> None:
    """On a new run: sliders from its saved preset (or engagement only), no previous setting."""
    if st.session_state.get(LOADED_KEY) == run.id:
        return
    _, saved = default_weights(run)
    set_sliders(saved or DEFAULT_WEIGHTS)
    st.session_state[LOADED_KEY] = run.id
    st.session_state[LAST_KEY] = st.session_state[PREV_KEY] = None
    st.session_state.pop(USER_KEY, None)  # another run may have other users


def set_sliders(weights: dict[str, float]) -> None:
    for s in SIGNALS:
        st.session_state[SLIDER.format(s)] = round(float(weights.get(s, 0.0)), 2)


def presets_bar(run: Run) -> None:
    """Load a saved preset into the sliders (the run's default is marked)."""
    presets = list_presets(run)
    if not presets["presets"]:
        st.caption("No saved weight preset for this run yet: save one below the sliders.")
        return
    names = list(presets["presets"])
    left, right = st.columns([3, 1])
    name = left.selectbox(
        "Saved presets (★ = the run's default, used by the CLI, Explain and exports)",
        names,
        index=names.index(presets["default"]) if presets["default"] in names else 0,
        format_func=lambda n: f"★ {n}" if n == presets["default"] else n,
        key=PRESET_PICK_KEY,
    )
    right.button("Load preset", on_click=set_sliders, args=(presets["presets"][name],), key="fusion_load_preset")


# -- the live panel -------------------------------------------------------------------------------
def sliders() -> dict[str, float]:
    cols = st.columns(len(SIGNALS))
    return {s: cols[i].slider(f"{s} weight", 0.0, 1.0, step=0.01, key=SLIDER.format(s)) for i, s in enumerate(SIGNALS)}


def remember(weights: dict[str, float], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Record this setting; the one before the last change (for deltas and rank changes), if any."""
    last = st.session_state.get(LAST_KEY)
    if last is None or last["weights"] != weights:
        st.session_state[PREV_KEY] = last
        st.session_state[LAST_KEY] = {"weights": weights, "metrics": metrics}
    return st.session_state.get(PREV_KEY)


def metrics_row(metrics: dict[str, Any], prev: dict[str, Any] | None) -> None:
    for col, (key, label) in zip(st.columns(len(LIVE_METRICS)), LIVE_METRICS):
        value = float(metrics[key])
        delta = None if prev is None else f"{value - float(prev['metrics'][key]):+.4f}"
        col.metric(
            label,
            f"{value:.4f}" if key != "mean_popularity@10" else f"{value:.1f}",
            delta,
            delta_color="off" if key == "mean_popularity@10" else "normal",
        )


def change_label(before: int | None, now: int) -> str:
    if before is None:
        return ""
    if before == now:
        return "="
    return f"▲ {before - now}" if before > now else f"▼ {now - before}"


def top_table(
    cands: Candidates,
    row: int,
    k: int,
    weights: dict[str, float],
    prev: dict[str, Any] | None,
    item_ids: np.ndarray,
    titles: pd.DataFrame,
) -> pd.DataFrame:
    """The user's top-k now: rank, change since the previous setting, item, title, score, every signal."""
    now = user_ranking(cands, row, weights)
    before = None
    if prev is not None:
        order = user_ranking(cands, row, prev["weights"])["item"]
        before = dict(zip(order.tolist(), range(1, len(order) + 1)))
    items = now["item"][:k]
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(items) + 1),
            "change": [
                change_label(None if before is None else before.get(int(i)), r + 1) for r, i in enumerate(items)
            ],
            S.ITEM_ID: item_ids[items],
            "score": now["score"][:k],
            **{s: now[s][:k] for s in SIGNALS},
        }
    )
    frame = frame.merge(titles, on=S.ITEM_ID, how="left")
    return frame[["rank", "change", S.ITEM_ID, S.ITEM_TITLE, "score", *SIGNALS]]


@st.fragment
def fusion_panel(run: Run) -> None:
    """The live panel; a slider move reruns only this fragment (its errors are shown here)."""
    try:
        live_panel(run)
    except BehaviorLensError as exc:
        show_error(exc)


def candidates(run: Run, context: str, request_time: str | None = None) -> tuple[Candidates, dict[str, Any]]:
    """The run's candidates of ``context``, with a spinner while they are first computed."""
    with st.spinner("Computing the run's head outputs for every user (once per run)…"):
        return run_candidates(run, context, request_time=request_time)


def request_time_choice() -> str:
    """When the test events are asked: the stand-in time (default) or their own time (declared known)."""
    asked = st.radio(
        "Held-out events are asked",
        ["at the stand-in time", "at their own time (known)"],
        horizontal=True,
        key=REQUEST_KEY,
        help="Stand-in: the last history event plus the typical next-visit gap; nothing of the held-out event "
        'is known. Own time: only where the request time is known at serving ("time-aware: target time known").',
    )
    return "actual" if str(asked).startswith("at their own") else "standin"


def baselines_caption(run: Run) -> None:
    """The bars beside the fused ranking, on the same split and protocol."""
    bars = run_baselines(run)
    parts = [
        f"{name.replace('_', ' ')} NDCG@10 {vals['NDCG@10']:.4f}, HR@10 {vals['HR@10']:.4f}"
        for name, vals in bars.items()
        if vals
    ]
    if parts:
        st.caption(plain("Baselines on the same split, no model: " + "; ".join(parts) + "."))


def live_panel(run: Run) -> None:
    """Presets, sliders -> metrics with deltas, the chosen user's top-K with rank changes, trade-off chart, save."""
    presets_bar(run)
    raw = sliders()
    try:
        weights = normalize_weights(raw)
    except DataError as exc:
        show_error(exc)
        return
    st.caption(plain("normalized weights: " + ", ".join(f"{s} {w:.3f}" for s, w in weights.items())))
    st.subheader("Ranking metrics (test split)")
    test, meta = candidates(run, "test", request_time_choice())
    metrics = fused_metrics(test, weights)
    prev = remember(weights, metrics)
    metrics_row(metrics, prev)
    baselines_caption(run)
    st.caption(
        plain(
            f"{meta.get('label', '')}; {metrics['users']:,} users"
            + (
                ""
                if metrics["exact_users"] == 1
                else f"; top-10 provably exact for {metrics['exact_users']:.1%} of users (pre-selected candidates)"
            )
        )
    )
    user_section(run, weights, prev)
    tradeoff_section(run, weights, metrics)
    save_section(run, weights)


def user_section(run: Run, weights: dict[str, float], prev: dict[str, Any] | None) -> None:
    everyone, meta = candidates(run, "all")
    st.subheader("Top-K for one user")
    left, right = st.columns([3, 1])
    user = left.selectbox("User (stored ID)", meta["user_ids"], key=USER_KEY)
    k = right.number_input("K", 1, 100, 10, key=K_KEY)
    row = meta["user_ids"].index(user)
    table = top_table(everyone, row, int(k), weights, prev, run.item_ids(), run.item_titles())
    st.dataframe(
        table,
        hide_index=True,
        key="fusion_top_table",
        column_config={
            "score": st.column_config.NumberColumn(format="%.4f"),
            **{s: st.column_config.NumberColumn(format="%.3f") for s in SIGNALS},
        },
    )
    if prev is not None:
        st.caption(plain(f"change: rank movement since the previous setting ({format_weights(prev['weights'])})"))


def tradeoff_section(run: Run, weights: dict[str, float], metrics: dict[str, Any]) -> None:
    st.subheader("Trade-off over the weight simplex")
    axis = st.radio(
        "Against",
        ["coverage@10", "mean_popularity@10"],
        horizontal=True,
        key=AXIS_KEY,
        format_func=lambda a: "catalogue coverage@10" if a == "coverage@10" else "mean popularity@10",
    )
    with st.spinner("Sweeping the weight simplex…"):
        points = run_sweep(run)
    current = {**weights, **metrics}
    st.plotly_chart(charts.tradeoff(points, axis, "NDCG@10", SIGNALS, current), key="fusion_tradeoff")
    st.caption(f"{len(points)} weight settings on a 0.25 grid of the simplex; the star is the current setting.")


def save_section(run: Run, weights: dict[str, float]) -> None:
    left, right = st.columns([3, 1])
    name = left.text_input("Preset name", key=PRESET_NAME_KEY, placeholder="e.g. balanced")
    if right.button("Save as the run's preset", key="fusion_save"):
        try:
            save_preset(run, name.strip(), weights)
        except BehaviorLensError as exc:
            show_error(exc)
            return
        st.success(plain(f"Saved preset {name.strip()}: {format_weights(weights)} (now the run's default)"))


def main() -> None:
    """The page: run, formula, presets, then the live panel; project errors shown, never raised."""
    route_through_frame()
    st.title("Fusion")
    st.latex(FORMULA)
    st.caption(NORMALIZATION)
    try:
        run = pick_run(get_workspace(), "fusion_run")
        if run is None:
            return
        start_run(run)
        fusion_panel(run)
    except BehaviorLensError as exc:
        show_error(exc)


main()
