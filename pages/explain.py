"""The Explain page: pick a user -> their top-K -> pick an item -> why: attributions on a timeline,
per-behavior sums, the counterfactual set, a plain-language summary, faithfulness and text tokens.

Widgets and layout only: the top-K is the run's fusion candidates ranked with the run's default
weights (``core.runs.fusion.user_top``); explanations, counterfactual sets and token attributions
are ``core.runs.explain`` (kept by the run's handle); the summary is ``core.explain.summary``; the
figures ``core.views.explain_charts``; the text tokens ``pages/_explain_tokens.py``. The explained (run, user, item,
method, target, K) goes to the session for the Export page. Item titles and IDs are user
data: shown only inside ``st.dataframe``, widget options, Plotly (escaped) or through ``plain``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import schema as S
from core.errors import BehaviorLensError
from core.explain.explanation import TARGET_UNITS
from core.explain.summary import summarize
from core.fusion.formula import format_weights
from core.runs.explain import counterfactual_run, explain_run
from core.runs.fusion import run_candidates, user_top
from core.runs.run import Run
from core.views import explain_charts as charts
from pages._explain_tokens import tokens_section
from pages._shared import EXPLAINED_KEY, get_workspace, pick_run, plain, route_through_frame, show_error

METHODS = {"ig": "Integrated Gradients", "shap": "SHAP", "loo": "Leave-one-out", "attention": "Attention (heuristic)"}
TARGETS = {"fused": "fused ranking score", "engagement": "engagement (log-probability)", "rating": "predicted rating"}
USER_KEY, K_KEY, ITEM_KEY = "explain_user", "explain_k", "explain_item"
LOADED_KEY = "explain_loaded_run"  # the run whose users the user picker holds
METHOD_KEY, TARGET_KEY = "explain_method", "explain_target"
MAX_LISTED = 5000  # users offered in the picker; any other can be typed


# -- user and top-K ------------------------------------------------------------------------------------
def pick_user(run: Run, users: list[str]) -> tuple[str, str] | None:
    """(stored user ID, label shown) from the searchable picker; a typed ID is resolved as an original ID."""
    pseudonymized = run.workspace.dataset(run.dataset).pseudonymized
    label = "User (search the pseudonyms, or type an original user ID)" if pseudonymized else "User (search or type)"
    choice = st.selectbox(
        label,
        users[:MAX_LISTED],
        key=USER_KEY,
        accept_new_options=True,
        help="Type to search. An ID that is not in the list is looked up as an original user ID "
        "(pseudonymized the way the dataset was).",
    )
    if choice is None or not str(choice).strip():
        st.info("Pick or type a user.")
        return None
    choice = str(choice).strip()
    if choice in set(users):
        return choice, choice
    stored = run.stored_user(choice)
    if pseudonymized:
        st.caption(plain(f"Original user ID {choice} is stored as {stored}."))
    return stored, choice


def top_section(run: Run, user: str) -> tuple[pd.DataFrame, dict[str, float], int]:
    """The user's top-K by fused score (the run's default weights) with every signal; the table, weights, K."""
    k = int(st.number_input("K (recommendations shown and the counterfactual's top-K)", 1, 100, 10, key=K_KEY))
    table, weights, name = user_top(run, user, k)
    st.dataframe(
        table,
        hide_index=True,
        key="explain_top_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in ("score", "engagement", "rating", "popularity", "freshness")
        },
    )
    which = f"the run's default preset {name}" if name else "no saved preset, so engagement alone"
    st.caption(
        plain(
            f"score = fused score with weights {format_weights(weights)} ({which}); engagement and rating "
            f"are the two heads' outputs, each scaled into [0, 1] (see the Fusion page)."
        )
    )
    return table, weights, k


def pick_item(table: pd.DataFrame, user: str) -> str | None:
    """The item to explain, from the user's top-K (the top item by default)."""
    if table.empty:
        st.info("This user has no candidate items under the run's protocol.")
        return None
    items = table[S.ITEM_ID].astype(str).tolist()
    names = dict(zip(items, table[S.ITEM_TITLE]))

    def label(item: str) -> str:
        title = names.get(item)
        return f"{items.index(item) + 1}. {title if isinstance(title, str) and title else item} ({item})"

    return str(st.selectbox("Item to explain", items, index=0, format_func=label, key=f"{ITEM_KEY}_{user}"))


# -- the explanation ------------------------------------------------------------------------------------
def explanation_controls() -> tuple[str, str]:
    """Method and target radios."""
    left, right = st.columns(2)
    method = left.radio(
        "Method",
        list(METHODS),
        format_func=METHODS.get,
        horizontal=True,
        key=METHOD_KEY,
        help="Attention weights are a heuristic: where the model looks, not what moves the score.",
    )
    target = right.radio("Explained score", list(TARGETS), format_func=TARGETS.get, horizontal=True, key=TARGET_KEY)
    return str(method), str(target)


def summary_section(exp: Any) -> None:
    st.subheader("Summary")
    st.info(plain(summarize(exp)))


def timeline_section(exp: Any) -> None:
    """Timeline, per-behavior sums, and the events with their attributions."""
    st.subheader("Events on a timeline")
    if exp.heuristic:
        st.warning(
            "Attention weights are a heuristic, not an attribution: they show where the model looks, "
            "have no sign and need not match what moves the score."
        )
    st.plotly_chart(charts.timeline(exp), key="explain_timeline")
    st.caption(plain(_method_note(exp)))
    if exp.target == "fused":
        st.caption(
            "Fused score: the user's engagement scale (the top candidate's probability and the lowest) "
            "is held where the full history puts it, so removing events moves the score of every item, "
            "the top one included."
        )
    left, right = st.columns([1, 2])
    left.plotly_chart(charts.behavior_sums(exp), key="explain_behavior_sums")
    events = pd.DataFrame(
        [
            {
                "time": e.time,
                "behavior": e.behavior,
                "item": e.item,
                "title": e.title,
                "value": e.value,
                "attribution": e.attribution,
            }
            for e in exp.events
        ]
    )
    right.dataframe(events, hide_index=True, key="explain_events")


def _method_note(exp: Any) -> str:
    units = exp.units or TARGET_UNITS.get(exp.target, "")
    delta = "" if exp.completeness_delta is None else f"; completeness delta {exp.completeness_delta:.3g}"
    return (
        f"{METHODS.get(exp.method, exp.method)} on the {exp.target} score ({units}): score {exp.score:.4g}, "
        f"with every event masked {exp.baseline_score:.4g}{delta}; {len(exp.events)} events; "
        f"{exp.runtime_ms:.0f} ms."
    )


def counterfactual_section(run: Run, user: str, label: str, item: str, k: int) -> None:
    st.subheader("Counterfactual set")
    with st.spinner("Searching for a counterfactual set…"):
        cf = counterfactual_run(run, user, item, k, stored=True, label=label)
    (st.success if cf.found else st.info)(plain(cf.message[:1].upper() + cf.message[1:] + "."))
    if cf.events:
        removed = pd.DataFrame(cf.events)[["time", "behavior", "item", "title", "value", "attribution"]]
        st.dataframe(
            removed.rename(columns={"attribution": "LOO of the top-K margin"}),
            hide_index=True,
            key="explain_counterfactual",
        )
    st.caption(
        "Search: greedy by leave-one-out attribution of the engagement top-K margin, then pruned to a "
        "1-minimal set and verified by re-scoring; the smallest set found, not a proven minimum."
    )


def faithfulness_section(exp: Any) -> None:
    st.subheader("Faithfulness")
    cols = st.columns(3)
    cols[0].metric("AOPC (this explanation)", "n/a" if exp.aopc is None else f"{exp.aopc:.4g}")
    cols[1].metric("AOPC (random order)", "n/a" if exp.aopc_random is None else f"{exp.aopc_random:.4g}")
    better = exp.aopc is not None and exp.aopc_random is not None and exp.aopc > exp.aopc_random
    cols[2].metric("Better than random", "yes" if better else "no")
    st.plotly_chart(charts.deletion_chart(exp), key="explain_deletion")
    st.caption(
        "AOPC: the mean drop of the score as events are removed, most attributed first; above the random "
        "order's means the explanation ranks the events that carry the score first."
    )


def explain_section(run: Run, who: tuple[str, str], item: str, k: int, weights: dict[str, float]) -> None:
    """Method/target, then every view of the explanation; the request goes to the session."""
    (user, label), (method, target) = who, explanation_controls()
    fused = weights if target == "fused" else None
    with st.spinner("Explaining…"):
        exp = explain_run(run, user, item, method, target, fused, stored=True, label=label)
    summary_section(exp)
    timeline_section(exp)
    counterfactual_section(run, user, label, item, k)
    faithfulness_section(exp)
    tokens = tokens_section(run, user, item, target, fused, exp)
    st.session_state[EXPLAINED_KEY] = {
        "run": run.id,
        "user": user,
        "label": label,
        "item": item,
        "method": method,
        "target": target,
        "k": k,
        "weights": fused,
        "tokens": tokens,
    }


def main() -> None:
    """The page: run, user, top-K, item, then the explanation; project errors shown, never raised."""
    route_through_frame()
    st.title("Explain")
    st.caption("Why does this user get this item? Pick a user and one of their recommendations.")
    try:
        run = pick_run(get_workspace(), "explain_run")
        if run is None:
            return
        with st.spinner("Computing the run's head outputs for every user (once per run)…"):
            _, meta = run_candidates(run, "all")
        if st.session_state.get(LOADED_KEY) not in (None, run.id):
            st.session_state.pop(USER_KEY, None)  # another run (another dataset) has other users
        st.session_state[LOADED_KEY] = run.id
        who = pick_user(run, meta["user_ids"])
        if who is None:
            return
        table, weights, k = top_section(run, who[0])
        item = pick_item(table, who[0])
        if item is not None:
            explain_section(run, who, item, k, weights)
    except BehaviorLensError as exc:
        show_error(exc)


main()
