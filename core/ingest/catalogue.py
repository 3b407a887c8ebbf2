"""The item catalogue: read an items file and join its text columns into one item text.

Text columns are joined in a fixed order (title, brand, category, tags,
description, then the rest), each non-empty value once, separated by ". ".
Numeric columns go into a JSON object of attributes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import duckdb
import pandas as pd

from core import schema as S
from core.errors import DataError, UnusableFileError
from core.ingest import item_text
from core.ingest.advice import Hint, Notice, notices_of
from core.ingest.mapping import guess_mapping, is_numeric_text, normalize_name
from core.ingest.reader import count, load_source
from core.ingest.sniff import TRAILING
from core.ingest.source import inspect_source
from core.ingest.source_info import Malformed, SourceInfo
from core.ingest.validation import CHECKED

EXAMPLES_PER_REASON = 5
R_DUPLICATE_ITEM = "duplicate_item_id"


def read_catalogue(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike[str],
    id_column: str | None = None,
    text_columns: list[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Items as ``[item_id, title, category, item_text, attrs]`` plus an accounting report; ``text_columns``: the
    columns joined into the item text, in that order (None: every text column, title first)."""
    info = inspect_source(path)
    malformed = load_source(con, info, "__items_src")
    frame = con.execute("SELECT * FROM __items_src").df()  # in file order (insertion order is kept)
    con.execute("DROP TABLE __items_src")
    record = pd.Series(range(1, len(frame) + 1), index=frame.index)  # 1-based record numbers
    id_col = id_column or guess_mapping(info.columns).get(S.ITEM_ID)
    if id_col is None or id_col not in frame.columns:
        raise UnusableFileError(
            Notice(
                f"items file {info.path.name} has no item ID column among {info.columns}: name one "
                "item_id (or product_id, asin, movie_id, ...) or ",
                Hint("items_id_column", act=True),
            )
        )
    ids = frame[id_col].astype("string").str.strip()
    missing = ids.isna() | ids.str.lower().isin(S.NULL_TOKENS)
    dup = ~missing & ids.duplicated(keep="first")
    reasons = {S.R_MISSING_ITEM: missing, R_DUPLICATE_ITEM: dup}
    kept = frame[~missing & ~dup].copy()
    kept[id_col] = ids[~missing & ~dup]
    if text_columns is not None:
        unknown = [c for c in text_columns if c not in info.columns or c == id_col]
        if unknown:
            raise DataError(
                f"items text column {unknown[0]!r}: expected columns of {info.path.name} other than its item ID "
                f"column {id_col!r}: {', '.join(repr(c) for c in info.columns if c != id_col)}"
            )
    items = _item_table(kept, id_col, [c for c in info.columns if c != id_col], text_columns)
    report = _catalogue_report(info, record, reasons, malformed, items)
    return items, report


def _item_table(frame: pd.DataFrame, id_col: str, others: list[str], chosen: list[str] | None = None) -> pd.DataFrame:
    text_cols, num_cols = _split_columns(frame, others)
    title_col = _first_named(text_cols, S.ITEM_TITLE_ALIASES)
    cat_col = _first_named(text_cols, S.ITEM_CATEGORY_ALIASES)
    ordered = sorted(text_cols, key=_text_rank) if chosen is None else list(dict.fromkeys(chosen))
    texts = frame[ordered].astype("string").fillna("") if ordered else pd.DataFrame(index=frame.index)
    item_text = [_join_text(row) for row in texts.itertuples(index=False)] if ordered else [""] * len(frame)
    return pd.DataFrame(
        {
            S.ITEM_ID: frame[id_col].astype(str).to_numpy(),
            S.ITEM_TITLE: (frame[title_col].astype("string").str.strip() if title_col else frame[id_col]).to_numpy(),
            S.ITEM_CATEGORY: frame[cat_col].astype("string").str.strip().to_numpy() if cat_col else None,
            S.ITEM_TEXT: item_text,
            S.ITEM_ATTRS: [_attrs(frame, num_cols, i) for i in range(len(frame))],
        }
    )


def _split_columns(frame: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    text_cols: list[str] = []
    num_cols: list[str] = []
    for col in columns:
        if col == TRAILING or normalize_name(col) in ("", "index", "unnamed0"):
            continue
        values = frame[col].dropna().astype(str).str.strip()
        values = values[values != ""]
        if values.empty:
            continue
        numeric = values.head(2000).map(is_numeric_text).mean() >= 0.9
        (num_cols if numeric and _first_named([col], S.ITEM_TEXT_ORDER) is None else text_cols).append(col)
    return text_cols, num_cols


def _first_named(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    for alias in aliases:
        for col in columns:
            if normalize_name(col) == alias:
                return col
    return None


def _text_rank(col: str) -> tuple[int, str]:
    name = normalize_name(col)
    order = S.ITEM_TEXT_ORDER
    return (order.index(name) if name in order else len(order), col)


def _join_text(values: tuple[str, ...]) -> str:
    seen: list[str] = []
    for value in values:
        value = str(value).strip()
        if value and value not in seen:
            seen.append(value)
    return ". ".join(seen)


def _attrs(frame: pd.DataFrame, num_cols: list[str], i: int) -> str | None:
    if not num_cols:
        return None
    out: dict[str, float] = {}
    for col in num_cols:
        raw = frame[col].iat[i]
        try:
            val = float(str(raw).replace(",", "."))
        except (TypeError, ValueError):
            continue
        if math.isfinite(val):
            out[col] = val
    return json.dumps(out, sort_keys=True)


def _catalogue_report(
    info: SourceInfo, record: pd.Series, reasons: dict[str, pd.Series], malformed: list[Malformed], items: pd.DataFrame
) -> dict[str, object]:
    rejected = {k: int(v.sum()) for k, v in reasons.items() if int(v.sum())}
    examples: dict[str, list[dict[str, object]]] = {
        k: [{"row": int(r)} for r in record[v].head(EXAMPLES_PER_REASON)] for k, v in reasons.items() if int(v.sum())
    }
    for m in malformed:  # malformed_row, line_too_long, nul_bytes
        rejected[m.reason] = rejected.get(m.reason, 0) + 1
        shown = examples.setdefault(m.reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append({"line": m.line, "error": m.error})
    return {
        "file": info.path.name,
        "format": info.format,
        "rows_read": int(len(record) + len(malformed)),
        "rows_accepted": int(len(items)),
        "rows_rejected": int(sum(rejected.values())),
        "rejected_by_reason": rejected,
        "examples": examples,
        "warnings": list(info.warnings),
        "notices": notices_of(info.warnings),  # the warnings as parts (core.ingest.advice)
    }


def item_rows(con: duckdb.DuckDBPyConnection, catalogue: tuple[pd.DataFrame, dict[str, Any]] | None) -> int:
    """Table ``__items``: catalogue rows plus every event item missing from it, each item's text followed by what
    the events file's descriptive columns say of it (table ``__item_text``); returns the event items."""
    event_items = f"SELECT DISTINCT i FROM {CHECKED} WHERE reason IS NULL"
    plain = (
        f"e.i AS {S.ITEM_ID}, e.i AS {S.ITEM_TITLE}, CAST(NULL AS VARCHAR) AS {S.ITEM_CATEGORY}, "
        f"coalesce(it.txt, '') AS {S.ITEM_TEXT}, CAST(NULL AS VARCHAR) AS {S.ITEM_ATTRS}"
    )
    described = "LEFT JOIN __item_text it ON it.i = e.i"
    if catalogue is None:
        con.execute(f"CREATE TABLE __items AS SELECT {plain} FROM ({event_items}) e {described}")
        return count(con, "SELECT count(*) FROM __items")
    con.execute(f"CREATE TABLE __event_items AS {event_items}")
    con.register("__cat_df", catalogue[0].astype("string"))
    text = f"concat_ws('{item_text.SEPARATOR}', nullif(c.{S.ITEM_TEXT}, ''), it.txt) AS {S.ITEM_TEXT}"
    cols = f"c.{S.ITEM_ID}, c.{S.ITEM_TITLE}, c.{S.ITEM_CATEGORY}, {text}, c.{S.ITEM_ATTRS}"
    con.execute(
        f"CREATE TABLE __items AS SELECT {cols} FROM __cat_df c LEFT JOIN __item_text it ON it.i = c.{S.ITEM_ID} "
        f"UNION ALL SELECT {plain} FROM __event_items e {described} "
        f"WHERE e.i NOT IN (SELECT {S.ITEM_ID} FROM __cat_df)"
    )
    con.unregister("__cat_df")
    return count(con, "SELECT count(*) FROM __event_items")
