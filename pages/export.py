"""The Export page: download the current explanation (CSV, HTML report) and the global influence (CSV).

Widgets and layout only: what to export comes from the session (the Explain page's last
explanation, the Influence page's last computed settings), the results from the run's handle
(``core.runs``: nothing is recomputed when they are there), the files from
``core.views.report``. The HTML report opens offline: plotly.js is inlined and every user text
is escaped.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.errors import BehaviorLensError
from core.explain.influence.report import InfluenceSettings
from core.model.privacy import privacy_label
from core.runs.explain import counterfactual_run, explain_run, token_attributions_run
from core.runs.fusion import user_top
from core.runs.influence import kept_ablation, kept_influence
from core.runs.records import usable_runs
from core.runs.run import Run
from core.store import audit
from core.store.uploads import safe_file_name
from core.store.workspace import Workspace
from core.views.report import attributions_csv, html_report, influence_csv
from pages._shared import (
    DATASET_KEY,
    EXPLAINED_KEY,
    INFLUENCE_KEY,
    get_run,
    get_workspace,
    page_actor,
    plain,
    route_through_frame,
    show_error,
)
from pages._waiting import no_usable_run


def exported(run_id: str, what: str) -> None:
    """A download button's callback: the audit log records the export (never a user ID: forgetting a user leaves
    the log as it is)."""
    audit.record(get_workspace(), "export", run_id, what, page_actor())


def report_parts(run: Run, request: dict[str, Any]) -> dict[str, Any]:
    """The explanation, its counterfactual set, the user's top-K and (if shown) the item's token highlights."""
    user, item = request["user"], request["item"]
    parts: dict[str, Any] = {
        "top": user_top(run, user, request["k"])[0],
        "counterfactual": counterfactual_run(run, user, item, request["k"], stored=True, label=request["label"]),
        "tokens": None,
    }
    if request.get("tokens"):
        words = token_attributions_run(run, user, item, request["target"], request["weights"], stored=True)[0].words
        parts["tokens"] = ([w for w, _ in words], [a for _, a in words])
    return parts


def explanation_downloads(ws: Workspace) -> None:
    """Attributions CSV and the HTML report of the Explain page's current explanation."""
    st.header("The current explanation")
    request = st.session_state.get(EXPLAINED_KEY)
    if not request:
        st.info("Nothing explained yet: pick a user and an item on the Explain page, then come back here.")
        return
    run = get_run(ws, request["run"])
    private = privacy_label(run.privacy)  # "trained with DP, epsilon = ..." or None
    exp = explain_run(
        run,
        request["user"],
        request["item"],
        request["method"],
        request["target"],
        request["weights"],
        stored=True,
        label=request["label"],
    )
    st.caption(
        plain(
            f"User {exp.user}, item {exp.item_title or exp.item} ({exp.item}), method {exp.method}, "
            f"{exp.target} score, run {request['run']}: {len(exp.events)} events."
            + (f" The run was {private}." if private else "")
        )
    )
    stem = safe_file_name(f"explanation-{exp.user}-{exp.item}-{exp.method}-{exp.target}")
    left, right = st.columns(2)
    left.download_button(
        "Attributions (CSV)",
        attributions_csv(exp),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key="export_attributions",
        on_click=exported,
        args=(request["run"], f"attributions CSV of one user's explanation, item {exp.item} ({exp.method})"),
        icon=":material/table:",
    )
    report = html_report(exp, **report_parts(run, request), model_note=private)
    right.download_button(
        "HTML report",
        report,
        file_name=f"{stem}.html",
        mime="text/html",
        key="export_report",
        on_click=exported,
        args=(request["run"], f"HTML report of one user's explanation, item {exp.item} ({exp.method})"),
        icon=":material/description:",
    )
    st.caption(
        "The HTML report is one self-contained file: summary, top-K, timeline, per-behavior sums, "
        "counterfactual set and faithfulness; it opens without a network."
    )


def influence_downloads(ws: Workspace) -> None:
    """The global influence table (with the ablation deltas when computed)."""
    st.header("Global influence")
    last = st.session_state.get(INFLUENCE_KEY)
    run = None if not last else get_run(ws, last["run"])
    report = None if run is None else kept_influence(run, InfluenceSettings(**last["settings"]), compute=False)
    if report is None:
        st.info("No global influence computed in this session: compute it on the Influence page first.")
        return
    ablation = kept_ablation(run, compute=False)
    st.caption(
        plain(
            f"Run {last['run']}: method {report.method}, {report.users:,} users, top-{report.k} items"
            + ("; with the behavior ablation" if ablation is not None else "")
        )
    )
    stem = safe_file_name(f"influence-{last['run']}-{report.method}-{report.users}users")
    st.download_button(
        "Global influence (CSV)",
        influence_csv(report, ablation),
        file_name=f"{stem}.csv",
        mime="text/csv",
        key="export_influence",
        on_click=exported,
        args=(last["run"], f"global influence CSV ({report.method}, {report.users:,} users)"),
        icon=":material/table:",
    )


def main() -> None:
    """The page: the training under way (if no run is usable), the explanation's files, then the influence table."""
    route_through_frame()
    st.title("Export")
    try:
        ws = get_workspace()
        if not usable_runs(ws, st.session_state.get(DATASET_KEY)):  # e.g. the demo model is still training
            no_usable_run(ws, st.session_state.get(DATASET_KEY))
        explanation_downloads(ws)
        influence_downloads(ws)
    except BehaviorLensError as exc:
        show_error(exc)


main()
