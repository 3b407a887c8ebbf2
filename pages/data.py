"""The Data page: upload a log, map its columns, ingest, read the report, see the overview.

Widgets and layout only: reading, validation and storage are ``core.ingest.pipeline``; the mapping form is
``pages/_ingest_form.py``, the advice in the page's terms ``pages/_advice.py``;
the overview tables are ``core.ingest.overview``; the figures are ``core.views.charts`` and ``.funnel``;
uploads are copied to disk only while one read of them lasts (``core.store.uploads``).
User-supplied text is shown with ``st.text``/``st.dataframe``/``st.json`` or
escaped by ``plain``, never as raw Markdown or HTML.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core import schema as S
from core.errors import BehaviorLensError
from core.ingest import overview as O
from core.ingest.pipeline import inspect
from core.ingest.source_info import SourceInfo
from core.store.uploads import upload_copy
from core.store.workspace import DatasetInfo, Workspace
from core.views import charts
from core.views.funnel import funnel
from pages._access import analyst_only
from pages._advice import report_warnings
from pages._ingest_form import FIELD_MEANING, EventsUpload, column_names_box, mapping_form
from pages._privacy import audit_section, forget_section
from pages._shared import (
    DATASET_KEY,
    REPORT_KEY,
    get_workspace,
    load_overview,
    plain,
    route_through_frame,
    show_error,
    show_warnings,
)

UPLOAD_TYPES = ["csv", "tsv", "txt", "gz", "parquet", "jsonl", "json"]
EVENTS_UPLOAD = "events_upload"
ITEMS_UPLOAD = "items_upload"
# (file_id, column names given) -> (SourceInfo, guessed mapping) of this session's current uploads. No copy of an
# upload stays on disk between runs: it is copied to a private folder for one inspection, and again for the
# ingest, and deleted right after either (core.store.uploads); the frame sweeps what a crash leaves (app.py).
UPLOADS_KEY = "_uploads"
Seen = dict[tuple[str, tuple[str, ...]], tuple[SourceInfo, dict[str, str]]]


# -- 1. upload and 2. mapping (the form: pages/_ingest_form.py) ----------------------------
def upload_section(ws: Workspace) -> None:
    """The two uploaders, names for a headerless file's columns, then the mapping form for the events file."""
    st.header("Upload a log")
    left, right = st.columns(2)
    events = left.file_uploader("Events file", type=UPLOAD_TYPES, key=EVENTS_UPLOAD)
    items = right.file_uploader("Items file (optional)", type=UPLOAD_TYPES, key=ITEMS_UPLOAD)
    seen: Seen = st.session_state.setdefault(UPLOADS_KEY, {})
    current = {f.file_id for f in (events, items) if f is not None}
    for key in [k for k in seen if k[0] not in current]:
        del seen[key]
    if events is None:
        st.caption("CSV/TSV (optionally gzipped), Parquet, JSON Lines or JSON; one row per behavior.")
        return
    try:
        info, guessed = inspected(ws, events, seen)
        source_summary(info)  # as detected: a file without a header row has numbered columns, named below
        names = None if info.header else column_names_box(events.file_id)
        if names:
            info, guessed = inspected(ws, events, seen, names)
    except BehaviorLensError as exc:
        show_error(exc)
        return
    for fld in S.REQUIRED_FIELDS:
        if fld not in guessed:
            st.warning(plain(f"No column was recognized as {fld}: pick the one that holds {FIELD_MEANING[fld]} below."))
    mapping_form(ws, EventsUpload(events, names, info.columns, guessed), items, items_columns(ws, items, seen))


def inspected(
    ws: Workspace, upload: UploadedFile, seen: Seen, names: list[str] | None = None
) -> tuple[SourceInfo, dict[str, str]]:
    """The layout and guessed mapping of an upload (read with the column ``names`` given), once per session."""
    key = (upload.file_id, tuple(names or ()))
    if key not in seen:
        with upload_copy(ws.root, upload.name, upload) as path:
            seen[key] = inspect(path, names)
    return seen[key]


def items_columns(ws: Workspace, items: UploadedFile | None, seen: Seen) -> tuple[list[str], str | None] | None:
    """The items file's columns and guessed ID column, for the form; None without one (or unusable: error shown)."""
    if items is None:
        return None
    try:
        info, guessed = inspected(ws, items, seen)
    except BehaviorLensError as exc:
        show_error(exc)
        return None
    return info.columns, guessed.get(S.ITEM_ID)


def source_summary(info: SourceInfo) -> None:
    """What was detected about the uploaded file (as plain text)."""
    parts = [
        f"format: {info.format}",
        f"compression: {info.compression or 'none'}",
        f"encoding: {info.encoding}",
        f"header: {'yes' if info.header else 'no'}",
    ]
    if info.delimiter_name:
        parts.insert(1, f"delimiter: {info.delimiter_name}")
    st.text(", ".join(parts) + f"\ncolumns: {', '.join(info.columns)}")


# -- 3. the validation report ----------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Example rows as an all-text table (mixed raw values never trip Arrow)."""
    return pd.DataFrame(rows).astype("string")


def show_report(report: dict[str, Any]) -> None:
    """Accounting, rejections by reason with examples, duplicates, items file and warnings."""
    read, accepted, rejected = report["rows_read"], report["rows_accepted"], report["rows_rejected"]
    cols = st.columns(4)
    cols[0].metric("Rows read", f"{read:,}")
    cols[1].metric("Rows accepted", f"{accepted:,}")
    cols[2].metric("Rows rejected", f"{rejected:,}")
    cols[3].metric("Duplicate rows", f"{report['duplicates']:,}")
    balanced = "balanced" if read == accepted + rejected else "MISMATCH"
    st.text(f"Accounting: {read:,} rows read = {accepted:,} accepted + {rejected:,} rejected ({balanced})")
    whose = "This file" if report.get("appended") else f"Dataset {report['dataset']}"  # an append: the file's own
    st.text(f"{whose}: {report['users']:,} users, {report['items']:,} items, user IDs {report['id_mode']}")
    forgotten = report.get("forgotten")
    if isinstance(forgotten, dict):  # behaviorlens forget: deleted since the ingest, on request
        st.info(
            f"Since this ingest, {forgotten.get('events', 0):,} accepted events of {forgotten.get('users', 0):,} "
            "user(s) were deleted on request (behaviorlens forget): the dataset holds the accepted rows less these."
        )
    show_appends(report)
    show_rejections(report["rejected_by_reason"], report["examples"])
    if report["duplicate_examples"]:
        st.text("Duplicate rows (first row, copies):")
        st.dataframe(table(report["duplicate_examples"]), hide_index=True)
    if report.get("items_file"):
        show_items_file(report["items_file"])
    show_item_text(report.get("item_text") or {})
    show_warnings(report_warnings(report))


def show_appends(report: dict[str, Any]) -> None:
    """What an append added (its own report), or the logs appended to a stored dataset since its ingest."""
    added = report.get("appended")
    if isinstance(added, dict):
        st.info(
            f"Appended to dataset {added['dataset']}: {added['events_added']:,} event(s) and {added['items_added']:,} "
            f"new item(s) added, {added['already_stored']:,} row(s) already stored (not added again). The dataset now "
            f"holds {added['events_after']:,} events, {added['users_after']:,} users and {added['items_after']:,} "
            "items; runs trained before keep the rows they were trained on."
        )
    appends = report.get("appends")
    if isinstance(appends, list) and appends:
        st.text("Logs appended since this ingest:")
        keys = ("sources", "version", "rows_read", "rows_accepted", "rows_rejected", "items_added")
        shown = [{k: ", ".join(a[k]) if k == "sources" else a.get(k) for k in keys} for a in appends]
        st.dataframe(table(shown), hide_index=True)


def show_rejections(by_reason: dict[str, int], examples: dict[str, list[dict[str, Any]]]) -> None:
    """Counts per rejection reason, then a few example rows of each."""
    if not by_reason:
        st.success("No row was rejected.")
        return
    st.subheader("Rejected rows by reason")
    counts = pd.DataFrame({"reason": list(by_reason), "rows": list(by_reason.values())})
    st.dataframe(counts, hide_index=True)
    for reason in by_reason:
        if examples.get(reason):
            st.text(f"Examples: {reason}")
            st.dataframe(table(examples[reason]), hide_index=True)


def show_item_text(described: dict[str, Any]) -> None:
    """The events file's columns read into the item text: template, conflicts, the columns left out."""
    if described.get("columns"):
        st.text(
            f"Item text from {', '.join(described['columns'])} for {described['items']:,} items, as: "
            f"{described['template']}"
        )
        conflicts = {c: n for c, n in described.get("conflicts", {}).items() if n}
        if conflicts:
            listed = ", ".join(f"{c}: {n:,} items" for c, n in conflicts.items())
            st.text(f"Items whose rows disagree (the latest value kept): {listed}")
    left_out = described.get("left_out") or {}
    if left_out:
        st.caption("Columns not read into the item text: " + "; ".join(f"{c} ({why})" for c, why in left_out.items()))


def show_items_file(items_file: dict[str, Any]) -> None:
    """The items file's own accounting."""
    st.text(
        f"Items file {items_file['file']}: {items_file['rows_read']:,} rows read = "
        f"{items_file['rows_accepted']:,} accepted + {items_file['rows_rejected']:,} rejected"
    )
    if items_file.get("rejected_by_reason"):
        reasons = items_file["rejected_by_reason"]
        st.dataframe(pd.DataFrame({"reason": list(reasons), "rows": list(reasons.values())}), hide_index=True)
    show_warnings(report_warnings(items_file))


def last_report_section() -> None:
    """The report of the ingest just run in this session, if any."""
    report = st.session_state.get(REPORT_KEY)
    if report:
        st.header("Validation report")
        show_report(report)


# -- 4. the overview ---------------------------------------------------------------------
def overview_section(ws: Workspace) -> None:
    """Charts and stored report of the dataset chosen in the sidebar."""
    name = st.session_state.get(DATASET_KEY)
    if not name:
        st.info("No dataset selected.")
        return
    info = ws.dataset(name)
    st.header("Overview")
    st.text(f"Dataset {info.name}: {info.n_events:,} events, {info.n_users:,} users, {info.n_items:,} items")
    overview_charts(info, load_overview(ws, info))
    with st.expander("Stored ingest report of this dataset"):
        show_report(info.report)
        st.json(info.report, expanded=False)


def overview_charts(info: DatasetInfo, view: O.Overview) -> None:
    """Funnel, transitions, events per day, per user, per item and top items."""
    order = view.funnel[S.BEHAVIOR].tolist()
    shown = O.first_behaviors(order)
    if len(shown) < len(order):
        st.caption(f"{len(order)} behaviors: the charts show the first {len(shown)} in funnel order.")
    left, right = st.columns(2)
    left.plotly_chart(funnel(view.funnel[view.funnel[S.BEHAVIOR].isin(shown)], total=info.n_users), key="chart_funnel")
    right.plotly_chart(charts.transition_heatmap(O.transition_matrix(view.transitions, order)), key="chart_transitions")
    if S.TIMESTAMP in info.mapping:
        st.plotly_chart(charts.events_over_time(view.daily, shown), key="chart_daily")
    else:
        st.caption("No timestamp column was mapped: events per day is not drawn (times follow the file order).")
    left, right = st.columns(2)
    left.plotly_chart(charts.count_histogram(view.per_user, O.USERS, "Events per user"), key="chart_per_user")
    right.plotly_chart(charts.count_histogram(view.per_item, O.ITEMS, "Events per item"), key="chart_per_item")
    st.plotly_chart(charts.top_items(view.top_items), key="chart_top_items")


def main() -> None:
    """The page: upload, last report, overview; project errors shown, never raised."""
    route_through_frame()
    st.title("Data")
    if not analyst_only("open the Data page"):
        return
    try:
        ws = get_workspace()
        upload_section(ws)
        last_report_section()
        overview_section(ws)
        forget_section(ws)
        audit_section(ws)
    except BehaviorLensError as exc:
        show_error(exc)


main()
