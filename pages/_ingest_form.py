"""The Data page's mapping form: the column mapping, the ingest options, the Ingest button and the ingest run.

Its labels are those the ingest advice names (``pages/_advice.py``): every option a warning points to
(time format, default behavior, dropping duplicates, the items file's ID column, names for a headerless
file's columns) can be set here. Uploads are copied to disk only while one read of them lasts
(``core.store.uploads``).
"""

from __future__ import annotations

import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core import schema as S
from core.errors import BehaviorLensError, UnmappedFieldError
from core.ingest.advice import Hint
from core.ingest.item_text import AUTO, looks_descriptive
from core.ingest.item_text import NONE as NO_TEXT
from core.ingest.options import IngestOptions
from core.ingest.pipeline import default_name, ingest
from core.progress import fraction
from core.store.uploads import upload_copy
from core.store.workspace import Workspace
from pages._access import analyst_only
from pages._advice import (
    BEHAVIOR_CODES,
    COLUMN_MAPPING,
    COLUMN_NAMES,
    DEFAULT_BEHAVIOR,
    DROP_DUPLICATES,
    ITEMS_ID,
    KEEP_IDS,
    MORE_OPTIONS,
    TIME_FORMAT,
    page_words,
)
from pages._shared import PENDING_DATASET_KEY, REPORT_KEY, page_actor, plain, show_error

NONE = "(none)"
APPEND_TO = "Add the events to"
NEW_DATASET = "a new dataset (the name on the left)"
ITEM_TEXT = "Item text columns (empty: chosen automatically)"
NO_ITEM_TEXT = "No item text from the events file"
ITEMS_TEXT = "Items file text columns (empty: every text column)"
FIELD_MEANING = {S.USER_ID: "the user (or visitor, customer, session) IDs", S.ITEM_ID: "the item (product) IDs"}
NAME_THEM = page_words(Hint("columns", act=True))  # "fill in the Column names box above the ... form"


@dataclass
class EventsUpload:
    """The events upload as the form maps it: its column names given (headerless), columns and guessed mapping."""

    file: UploadedFile
    names: list[str] | None
    columns: list[str]
    guessed: dict[str, str]


def column_names_box(file_id: str) -> list[str] | None:
    """For a file without a header row: names for its columns, comma-separated (None while empty)."""
    text = st.text_input(
        COLUMN_NAMES,
        placeholder="user_id,item_id,timestamp,behavior",
        key=f"columns_{file_id}",
        help="The file has no header row, so its columns are numbered (column0, column1, ...): name them, "
        "comma-separated, in file order, to map them by name.",
    )
    return [c.strip() for c in text.split(",")] if text.strip() else None


def unmapped_message(exc: UnmappedFieldError, taken: set[str]) -> str:
    """A missing ID column, in this page's words: the mapping form's box to pick it in, and the free columns."""
    free = [c for c in exc.columns if c not in taken] or exc.columns
    header = "" if exc.header else f" The file has no header row, so its columns are numbered: {NAME_THEM}."
    return (
        f"No column is picked for {exc.field}. In the {COLUMN_MAPPING} form, choose the column that holds "
        f"{FIELD_MEANING.get(exc.field, exc.field)} in the {exc.field} box (one of: {', '.join(free)}), "
        f"then press Ingest.{header}"
    )


def mapping_form(
    ws: Workspace, events: EventsUpload, items: UploadedFile | None, item_columns: tuple[list[str], str | None] | None
) -> None:
    """Column mapping (pre-filled with the guess), options and the Ingest button; ``item_columns``: the items
    file's columns and its guessed ID column."""
    tag = events.file.file_id  # a new upload gets fresh defaults
    columns_tag = zlib.crc32("\x1f".join(events.columns).encode())  # named columns: fresh mapping boxes
    with st.form(f"ingest_form_{tag}"):
        st.subheader(COLUMN_MAPPING)
        options = [NONE, *events.columns]
        mapping: dict[str, str | None] = {}
        grid = st.columns(3)
        for i, fld in enumerate(S.EVENT_FIELDS):
            guess = events.guessed.get(fld)
            index = options.index(guess) if guess in options else 0
            choice = grid[i % 3].selectbox(fld, options, index=index, key=f"map_{fld}_{tag}_{columns_tag}")
            mapping[fld] = None if choice == NONE else choice
        codes = st.text_input(BEHAVIOR_CODES, placeholder="0=click,1=cart", key=f"codes_{tag}")
        left, right = st.columns(2)
        name = left.text_input("Dataset name", value=default_name(events.file.name), key=f"name_{tag}")
        target = right.selectbox(
            APPEND_TO,
            [NEW_DATASET, *ws.dataset_names()],
            key=f"append_to_{tag}",
            help="Add this log's events to a stored dataset: rows it already holds are counted, not added twice, "
            "and runs trained before keep the rows they were trained on. Its user IDs stay as it stores them.",
        )
        keep = st.checkbox(KEEP_IDS, value=False, key=f"keep_{tag}")
        item_text = item_text_fields(events, f"{tag}_{columns_tag}")
        with st.expander(MORE_OPTIONS):
            more = more_options(tag, item_columns)
        submitted = st.form_submit_button("Ingest", type="primary")
    if submitted:
        appending = target != NEW_DATASET
        opts = IngestOptions(
            name=None if appending else name.strip() or None,
            append_to=target if appending else None,
            columns=events.names,
            mapping=mapping,
            behavior_codes=codes.strip() or None,
            keep_ids=keep and not appending,  # an append keeps the dataset's ID mode
            item_text_columns=item_text,
            **more,
        )
        run_ingest(ws, events.file, items, opts)


def item_text_fields(events: EventsUpload, tag: str) -> list[str] | str:
    """The events file's columns that describe items (brand, category, price, ...), read into the item text;
    pre-selected by name among the unmapped columns. Empty: the ingest picks those with one value per item."""
    free = [c for c in events.columns if c not in events.guessed.values()]
    picked = st.multiselect(
        ITEM_TEXT,
        free,
        default=[c for c in free if looks_descriptive(c)],
        key=f"item_text_{tag}",
        help="Columns repeated on every event that describe the item, such as brand, category or price, become "
        "the item's text (brand: ... · category: ... · price: 30–40), which the language model reads. Where an "
        "item's rows disagree, the latest value wins and the report counts the conflicts.",
    )
    off = st.checkbox(NO_ITEM_TEXT, value=False, key=f"item_text_off_{tag}")
    return NO_TEXT if off else (list(picked) or AUTO)


def more_options(tag: str, item_columns: tuple[list[str], str | None] | None) -> dict[str, Any]:
    """The ingest options the warnings point to, as IngestOptions fields; an empty box leaves the automatic choice."""
    left, right = st.columns(2)
    time_format = left.text_input(
        TIME_FORMAT,
        placeholder="automatic; e.g. %m%d or %d/%m/%Y %H:%M",
        key=f"time_format_{tag}",
        help="How to read the timestamp column (strptime codes: %Y year, %m month, %d day, %H:%M:%S). "
        "Empty: detected (epoch seconds or milliseconds, ISO 8601).",
    )
    default = right.text_input(
        DEFAULT_BEHAVIOR,
        placeholder="view (rate with a value column)",
        key=f"default_behavior_{tag}",
        help="The behavior of every row when no behavior column is mapped.",
    )
    drop = st.checkbox(
        DROP_DUPLICATES,
        value=False,
        key=f"drop_duplicates_{tag}",
        help="Reject rows that repeat an earlier row exactly (reason 'duplicate'). Off: they are kept and counted.",
    )
    items_id, items_text = NONE, []
    if item_columns is not None:
        cols, guess = item_columns
        choices = [NONE, *cols]
        index = choices.index(guess) if guess in choices else 0
        items_tag = zlib.crc32("\x1f".join(cols).encode())
        items_id = st.selectbox(ITEMS_ID, choices, index=index, key=f"items_id_{tag}_{items_tag}")
        items_text = st.multiselect(
            ITEMS_TEXT,
            [c for c in cols if c != guess],
            key=f"items_text_{tag}_{items_tag}",
            help="The items file's columns joined into the item text, in the order picked. Empty: every text "
            "column, the title first.",
        )
    return {
        "time_format": time_format.strip() or None,
        "default_behavior": default.strip() or None,
        "drop_duplicates": drop,
        "items_id_column": None if items_id == NONE else items_id,
        "items_text_columns": list(items_text) or None,
    }


def run_ingest(ws: Workspace, events: UploadedFile, items: UploadedFile | None, options: IngestOptions) -> None:
    """Ingest private copies of the uploads (deleted right after, however it ends) with a progress bar; on
    success keep the report and select the new dataset."""
    if not analyst_only("ingest a log"):
        return
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
                actor=page_actor(),
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
