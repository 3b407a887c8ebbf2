"""The Influence page: which behaviors move the rankings across users, by time gap and category; ablation.

Widgets and layout only. The numbers are ``core.runs.influence`` over
``core.explain.influence.report.global_influence`` (estimands in its module docstring, restated on
the page) and ``core.explain.influence.ablation.behavior_ablation``; the figures are
``core.views.explain_charts``. Both computations run when asked, with a progress bar, once per run
and settings (the run's handle keeps the results), and the session remembers the last settings so
the Export page can offer the table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.errors import BehaviorLensError
from core.explain.influence.report import InfluenceSettings
from core.progress import fraction
from core.runs.influence import kept_ablation, kept_influence
from core.runs.run import Run
from core.views import explain_charts as charts
from pages._shared import INFLUENCE_KEY, get_workspace, pick_run, plain, route_through_frame, show_error

METHODS = {
    "loo": "leave-one-out (attributions)",
    "swap": "behavior swap (interventional)",
    "ig": "Integrated Gradients (attributions)",
}
STAT_KEY, METHOD_KEY, USERS_KEY, K_KEY = "influence_stat", "influence_method", "influence_users", "influence_k"
DEFAULT_USERS = 100
STAT_LABELS = {stat: label for stat, (_, label) in charts.STATISTICS.items()}
SHOWN = {
    "share": "Shown: each behavior's share of the total |attribution| (Σ|a| over its events ÷ Σ|a| over all "
    "events; the shares sum to 1).",
    "per_event": "Shown: the mean |attribution| of ONE settled event of each behavior to one recommended item "
    "(log-probability units).",
    "signed": "Shown: the signed mean attribution of ONE settled event of each behavior to one recommended item "
    "(log-probability units; positive = raises the recommended items).",
}
SWAP_NOTE = " With behavior swap, both means are interventional: the event's behavior set to this one vs. masked."
DEFINITIONS = """
Every number is about the engagement log-probability log p(j | history) of the items j the model
recommends (each sampled user's top-K under the run's protocol), attributed to the events of the user's
history (the newest events the model reads).

- **Share of total |attribution|**: Σ |attribution| over events of this behavior ÷ Σ |attribution| over all
  events. The shares sum to 1; a behavior gets a large share by counting a lot *or* by being frequent.
- **Mean |attribution| of one event**: the mean |attribution| of one event of this behavior to one
  recommended item, over *settled* events (at least an hour older than the user's newest event, i.e. not
  the ongoing session): how much a single such event counts.
- **Signed mean attribution of one event**: the same mean without absolute values: positive when such an
  event raises the recommended items on average. An event lifts related items and pushes others down
  through the softmax, so this mean can be near 0 for an influential behavior.

Method *behavior swap* replaces both means by an intervention: sampled events get each behavior in turn
(item, time and position kept) and the change against the event masked is measured. Intervals: 95%
percentile bootstrap over users. Time gap: event time vs. the user's newest event.
"""
ABLATION_PROTOCOL = (
    "Behavior ablation: every event of one behavior is masked in every history (no other event moves), and the "
    "held-out {split} events are re-scored under the run's protocol ({protocol}), {users:,} users. Δ = metric "
    "without the behavior − metric with it: a drop of HR@10 / NDCG@10 is negative, an RMSE increase positive."
)


def settings_form(n_users: int) -> dict[str, Any] | None:
    """Method, user sample size and K; the settings when Compute is pressed."""
    with st.form("influence_form"):
        left, mid, right = st.columns([2, 1, 1])
        method = left.radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True, key=METHOD_KEY)
        users = mid.number_input(
            "Users sampled",
            1,
            max(1, n_users),
            min(DEFAULT_USERS, max(1, n_users)),
            key=USERS_KEY,
            help="a seeded sample: the same settings give the same users",
        )
        k = right.number_input("Top-K items per user", 1, 50, 10, key=K_KEY)
        submitted = st.form_submit_button("Compute influence", type="primary")
    return {"users": int(users), "method": str(method), "k": int(k), "seed": 0} if submitted else None


def progress_callback(bar: Any, what: str) -> Any:
    """A progress callback (:mod:`core.progress`) that moves ``bar``."""

    def update(event: dict[str, Any]) -> None:
        bar.progress(fraction(event), text=f"{what}: {event['done']:,}/{event['total']:,}")

    return update


def compute(run: Run, settings: dict[str, Any]) -> None:
    """Run (or fetch) the influence report and the ablation with progress bars; remember the settings."""
    bar = st.progress(0.0, text="Attributing the sampled users' recommendations…")
    kept_influence(run, InfluenceSettings(**settings), progress_callback(bar, "Users attributed"))
    bar.progress(0.0, text="Behavior ablation…")
    kept_ablation(run, progress_callback(bar, "Behaviors removed"))
    bar.empty()
    st.session_state[INFLUENCE_KEY] = {"run": run.id, "settings": settings}


def behavior_section(report: Any, stat: str) -> None:
    """Bars with intervals for the chosen estimand, and the numbers behind them."""
    d = report.to_dict()
    st.plotly_chart(
        charts.influence_bars(d, stat, f"Influence by behavior: {STAT_LABELS[stat]}"), key="influence_behaviors"
    )
    key = charts.STATISTICS[stat][0]
    rows = [
        {
            "behavior": b,
            STAT_LABELS[stat]: v,
            "95% low": (d["intervals"].get(key, {}).get(b) or [None])[0],
            "95% high": (d["intervals"].get(key, {}).get(b) or [None, None])[1],
            "rows": d["events"].get(b),
        }
        for b, v in (d.get(key) or {}).items()
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="influence_table")
    st.caption(
        plain(
            f"{report.users:,} users, their top-{report.k} items, method {METHODS[report.method]}, "
            f"target {report.target}; protocol: {report.protocol}; {report.runtime_ms / 1000:.1f} s"
        )
    )


def group_sections(report: Any, stat: str) -> None:
    """The same estimand by time gap and by item category."""
    left, right = st.columns(2)
    left.plotly_chart(
        charts.influence_by_group(
            report.by_time_gap, stat, "Influence by time gap", "time before the user's newest event"
        ),
        key="influence_time_gap",
    )
    if report.by_category:
        right.plotly_chart(
            charts.influence_by_group(report.by_category, stat, "Influence by category", "item category"),
            key="influence_category",
        )
    else:
        right.caption("No item categories in this dataset: no breakdown by category.")


def model_weights_section(weights: dict[str, dict[str, float]]) -> None:
    """The behavior memory's own weight of one event per behavior and age (read from the model)."""
    st.subheader("The model's own weights")
    st.caption(
        "Not an attribution: the weight the model's behavior memory gives one event of each behavior, "
        "by how old the event is when the user comes back (at the behavior's most common value). "
        "It compares behaviors and ages within this model."
    )
    rows = [{"behavior": b, **{age: round(w, 3) for age, w in by_age.items()}} for b, by_age in weights.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="influence_model_weights")


def ablation_section(ablation: Any) -> None:
    """The metrics with every behavior, then each behavior's metric deltas, with the protocol spelled out."""
    st.subheader("Behavior ablation")
    baseline = ", ".join(f"{m} {v:.4f}" for m, v in ablation.baseline.items())
    st.caption(plain(f"With every behavior: {baseline}."))
    rows = [{"behavior": b, **deltas} for b, deltas in ablation.deltas.items()]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key="influence_ablation",
        column_config={
            m: st.column_config.NumberColumn(f"Δ {m}", format="%+.4f") for m in ("HR@10", "NDCG@10", "RMSE")
        },
    )
    st.caption(plain(ABLATION_PROTOCOL.format(split=ablation.split, protocol=ablation.protocol, users=ablation.users)))


def results(run: Run) -> None:
    """The last computed report of this run (if any): estimand choice, charts, ablation."""
    last = st.session_state.get(INFLUENCE_KEY)
    report = (
        None
        if not last or last["run"] != run.id
        else kept_influence(run, InfluenceSettings(**last["settings"]), compute=False)
    )
    if report is None:
        st.info("Pick the settings and press Compute influence: the numbers are computed once per run and settings.")
        return
    stat = st.radio("Estimand shown", list(STAT_LABELS), format_func=STAT_LABELS.get, horizontal=True, key=STAT_KEY)
    st.caption(SHOWN[str(stat)] + (SWAP_NOTE if report.method == "swap" and stat != "share" else ""))
    with st.expander("What the estimands mean", expanded=False):
        st.markdown(DEFINITIONS)
    behavior_section(report, str(stat))
    group_sections(report, str(stat))
    if report.model_weights:
        model_weights_section(report.model_weights)
    ablation = kept_ablation(run, compute=False)
    if ablation is not None:
        ablation_section(ablation)


def main() -> None:
    """The page: run, settings, compute on request, then the results; project errors shown."""
    route_through_frame()
    st.title("Influence")
    st.caption("Which behaviors drive the recommendations, across a sample of users.")
    try:
        ws = get_workspace()
        run = pick_run(ws, "influence_run")
        if run is None:
            return
        settings = settings_form(ws.dataset(run.dataset).n_users)
        if settings is not None:
            compute(run, settings)
        results(run)
    except BehaviorLensError as exc:
        show_error(exc)


main()
