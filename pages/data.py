"""The Data page: upload a log, map its columns, ingest, read the report, see the overview.

Widgets and layout only: reading, validation and storage are ``core.ingest.pipeline``;
the overview tables are ``core.ingest.overview``; the figures are ``core.views.charts`` and ``.funnel``;
uploads are copied to disk only while one read of them lasts (``core.store.uploads``).
User-supplied text is shown with ``st.text``/``st.dataframe``/``st.json`` or
escaped by ``plain``, never as raw Markdown or HTML.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core import schema as S
from core.errors import BehaviorLensError, UnmappedFieldError
from core.ingest import overview as O
from core.ingest.options import IngestOptions
from core.ingest.pipeline import default_name, ingest, inspect
from core.ingest.source_info import SourceInfo
from core.progress import fraction
from core.store.uploads import upload_copy
from core.store.workspace import DatasetInfo, Workspace
from core.views import charts
from core.views.funnel import funnel
from pages._shared import (
    DATASET_KEY,
    PENDING_DATASET_KEY,
    REPORT_KEY,
    get_workspace,
    load_overview,
    plain,
    route_through_frame,
    show_error,
    show_warnings,
)

UPLOAD_TYPES = ["csv", "tsv", "txt", "gz", "parquet", "jsonl", "json"]
NONE = "(none)"
EVENTS_UPLOAD = "events_upload"
ITEMS_UPLOAD = "items_upload"
# file_id -> (SourceInfo, guessed mapping) of this session's current upload. No copy of an upload stays on
# disk between runs: it is copied to a private folder for one inspection, and again for the ingest, and
# deleted right after either (core.store.uploads); the frame sweeps what a crash leaves (app.py).
UPLOADS_KEY = "_uploads"
FIELD_MEANING = {S.USER_ID: "the user (or visitor, customer, session) IDs", S.ITEM_ID: "the item (product) IDs"}


# -- 1. upload and 2. mapping --------------------------------------------------------
def upload_section(ws: Workspace) -> None:
    """The two uploaders, then the mapping form for the events file."""
    st.header("Upload a log")
    left, right = st.columns(2)
    events = left.file_uploader("Events file", type=UPLOAD_TYPES, key=EVENTS_UPLOAD)
    items = right.file_uploader("Items file (optional)", type=UPLOAD_TYPES, key=ITEMS_UPLOAD)
    seen: dict[str, tuple[SourceInfo, dict[str, str]]] = st.session_state.setdefault(UPLOADS_KEY, {})
    for file_id in [f for f in seen if events is None or f != events.file_id]:
        del seen[file_id]
    if events is None:
        st.caption("CSV/TSV (optionally gzipped), Parquet, JSON Lines or JSON; one row per behavior.")
        return
    try:
        if events.file_id not in seen:
            with upload_copy(ws.root, events.name, events) as path:
                seen[events.file_id] = inspect(path)
    except BehaviorLensError as exc:
        show_error(exc)
        return
    info, guessed = seen[events.file_id]
    source_summary(info)
    for fld in S.REQUIRED_FIELDS:
        if fld not in guessed:
            st.warning(plain(f"No column was recognized as {fld}: pick the one that holds {FIELD_MEANING[fld]} below."))
    mapping_form(ws, events, items, info.columns, guessed)


def unmapped_message(exc: UnmappedFieldError, taken: set[str]) -> str:
    """A missing ID column, in this page's words: the mapping form's box to pick it in, and the free columns."""
    free = [c for c in exc.columns if c not in taken] or exc.columns
    header = "" if exc.header else " The file has no header row, so its columns are numbered."
    return (
        f"No column is picked for {exc.field}. In the Column mapping form, choose the column that holds "
        f"{FIELD_MEANING.get(exc.field, exc.field)} in the {exc.field} box (one of: {', '.join(free)}), "
        f"then press Ingest.{header}"
    )


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


def mapping_form(
    ws: Workspace, events: UploadedFile, items: UploadedFile | None, columns: list[str], guessed: dict[str, str]
) -> None:
    """Column mapping (pre-filled with the guess), options and the Ingest button."""
    tag = events.file_id  # a new upload gets fresh defaults
    with st.form(f"ingest_form_{tag}"):
        st.subheader("Column mapping")
        options = [NONE, *columns]
        mapping: dict[str, str | None] = {}
        grid = st.columns(3)
        for i, fld in enumerate(S.EVENT_FIELDS):
            guess = guessed.get(fld)
            index = options.index(guess) if guess in options else 0
            choice = grid[i % 3].selectbox(fld, options, index=index, key=f"map_{fld}_{tag}")
            mapping[fld] = None if choice == NONE else choice
        codes = st.text_input("Behavior codes (optional)", placeholder="0=click,1=cart", key=f"codes_{tag}")
        name = st.text_input("Dataset name", value=default_name(events.name), key=f"name_{tag}")
        keep = st.checkbox("Keep raw user IDs (off: pseudonymized with a keyed hash)", value=False, key=f"keep_{tag}")
        submitted = st.form_submit_button("Ingest", type="primary")
    if submitted:
        opts = IngestOptions(
            name=name.strip() or None, mapping=mapping, behavior_codes=codes.strip() or None, keep_ids=keep
        )
        run_ingest(ws, events, items, opts)


def run_ingest(ws: Workspace, events: UploadedFile, items: UploadedFile | None, options: IngestOptions) -> None:
    """Ingest private copies of the uploads (deleted right after, however it ends) with a progress bar; on
    success keep the report and select the new dataset."""
    bar = st.progress(0.0, text="starting")
    try:
        with ExitStack() as copies:
            events_path = copies.enter_context(upload_copy(ws.root, events.name, events))
            items_path = None if items is None else copies.enter_context(upload_copy(ws.root, items.name, items))
            report = ingest(
                ws,
                events_path,
                items_path,
                options,
                source_names=[events.name],
                progress=lambda event: bar.progress(fraction(event), text=event["stage"]),
            )
    except UnmappedFieldError as exc:
        bar.empty()
        st.error(plain(unmapped_message(exc, {c for c in (options.mapping or {}).values() if c})))
        return
    except BehaviorLensError as exc:
        bar.empty()
        show_error(exc)
        return
    st.session_state[REPORT_KEY] = report.to_dict()
    st.session_state[PENDING_DATASET_KEY] = report.dataset
    st.rerun()


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
    st.text(
        f"Dataset {report['dataset']}: {report['users']:,} users, {report['items']:,} items, "
        f"user IDs {report['id_mode']}"
    )
    show_rejections(report["rejected_by_reason"], report["examples"])
    if report["duplicate_examples"]:
        st.text("Duplicate rows (first row, copies):")
        st.dataframe(table(report["duplicate_examples"]), hide_index=True)
    if report.get("items_file"):
        show_items_file(report["items_file"])
    show_warnings(report["warnings"])


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


def show_items_file(items_file: dict[str, Any]) -> None:
    """The items file's own accounting."""
    st.text(
        f"Items file {items_file['file']}: {items_file['rows_read']:,} rows read = "
        f"{items_file['rows_accepted']:,} accepted + {items_file['rows_rejected']:,} rejected"
    )
    if items_file.get("rejected_by_reason"):
        reasons = items_file["rejected_by_reason"]
        st.dataframe(pd.DataFrame({"reason": list(reasons), "rows": list(reasons.values())}), hide_index=True)
    show_warnings(items_file.get("warnings", []))


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
    try:
        ws = get_workspace()
        upload_section(ws)
        last_report_section()
        overview_section(ws)
    except BehaviorLensError as exc:
        show_error(exc)


main()
