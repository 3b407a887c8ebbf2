"""Item text from the descriptive columns of an events file: ``brand: shiseido · category: appliances > kettle``.

Many logs have no item catalogue: what describes an item (brand, category, price, a Taobao
``category_id``) is repeated on every event row. Those columns become each item's text, so the text
encoder reads them and items that share a brand or a category share words:

- **Which columns.** ``--item-text-columns a,b,c`` names them; ``auto`` (the default) pre-selects the
  unmapped columns that describe items: filled on at least half of the accepted rows, with one value
  for at least 90% of the items met on two rows or more (a row ID, a session ID or a transaction ID
  changes within an item and is left out), at most :data:`MAX_AUTO_COLUMNS`; ``none`` turns it off.
- **Which value.** Where an item's rows disagree, the latest value wins (by timestamp, then row), and
  the report counts the items whose values conflict, per column.
- **How it reads.** A visible template, ``column: value`` joined by `` · ``, the column named without
  an ``_id``/``_code`` suffix and with spaces for underscores. A dotted path (``appliances.kitchen.kettle``)
  reads ``appliances > kitchen > kettle``; an ID column's numbers stay whole tokens (``category: 4145813``);
  other numbers become a range of their magnitude (``price: 30–40``, ``weight: 0.5–0.6``), so nearby
  prices share a word.

The text is added to what an items file gives (after it, for catalogue items), never replacing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import duckdb

from core.errors import DataError
from core.ingest.reader import quote_ident, sql_str

AUTO, NONE = "auto", "none"
MAX_AUTO_COLUMNS = 6
MIN_FILLED = 0.5  # auto: share of accepted rows with a value
MIN_STABLE = 0.9  # auto: share of the items met on two rows or more that have a single value
MIN_REPEATED = 3  # auto: items met on two rows or more, to judge whether a column is an item attribute
SEPARATOR = " · "
# an ID or code suffix after a separator (brand_id, category code) or in camel case (categoryId), not "paid"
_ID_SUFFIX = re.compile(r"(?:[_ ](?:[iI][dD]|[cC][oO][dD][eE]|[cC][dD])|(?<=[a-z])(?:Id|ID|Code))$")
_DOTTED = re.compile(r"^[^\s.]+(?:\.[^\s.]+)+$")
_DESCRIPTIVE = re.compile(
    r"brand|categor|^cat(?:_?id)?$|price|title|^name$|product_?name|tags?$|genre|colou?r|size|descr|model|style|"
    r"material|seller|shop|store|merchant",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


@dataclass
class ItemTextPlan:
    """The descriptive columns an ingest carries (``carried``, in the parse as ``d0``, ``d1``, ...) and how
    the choice is made (``requested``: the named columns, or ``auto``)."""

    carried: list[str] = field(default_factory=list)
    requested: list[str] | str = AUTO


def plan(columns: list[str], mapping: dict[str, str], requested: list[str] | str | None) -> ItemTextPlan:
    """Which columns of the file the read pass must carry for the item text.

    ``requested``: a list of column names, ``auto`` (None: auto) or ``none``. DataError names a requested
    column the file does not have, or one mapped to a field."""
    mapped = set(mapping.values())
    if requested is None or requested == AUTO:
        return ItemTextPlan([c for c in columns if c not in mapped and c.strip()][: 4 * MAX_AUTO_COLUMNS], AUTO)
    if requested == NONE or requested == []:
        return ItemTextPlan([], [])
    if isinstance(requested, str):
        raise DataError(f"item text columns {requested!r}: expected column names, {AUTO!r} or {NONE!r}")
    unknown = [c for c in requested if c not in columns]
    if unknown:
        raise DataError(
            f"item text column {unknown[0]!r} is not in the file: expected some of {', '.join(map(repr, columns))}"
        )
    taken = [c for c in requested if c in mapped]
    if taken:
        field_name = next(f for f, col in mapping.items() if col == taken[0])
        raise DataError(
            f"item text column {taken[0]!r} is mapped to {field_name}: an item text column describes the item"
        )
    return ItemTextPlan(list(dict.fromkeys(requested)), list(dict.fromkeys(requested)))


def looks_descriptive(column: str) -> bool:
    """Whether a column's name says it describes items (brand, category, price, ...): what a form pre-selects."""
    return bool(_DESCRIPTIVE.search(column))


def carried_fields(p: ItemTextPlan) -> list[str]:
    """SQL of the read pass's extra fields: ``nullif(trim(col), '') AS d0``, ..."""
    return [f"nullif(trim(CAST({quote_ident(c)} AS VARCHAR)), '') AS d{k}" for k, c in enumerate(p.carried)]


def build(con: duckdb.DuckDBPyConnection, p: ItemTextPlan, checked: str) -> dict[str, Any]:
    """Table ``__item_text`` (``i``, ``txt``) of every accepted item with a described value; -> the report's
    ``item_text`` section: columns, template, items described, conflicts per column, the columns auto left out."""
    if not p.carried:
        con.execute("CREATE OR REPLACE TEMP TABLE __item_text (i VARCHAR, txt VARCHAR)")
        return {"columns": [], "template": "", "items": 0, "conflicts": {}, "left_out": {}}
    stats = _stats(con, p, checked)
    chosen = list(range(len(p.carried)))
    left_out: dict[str, str] = {}
    if p.requested == AUTO:
        chosen, left_out = _auto(p, stats)
    names = [p.carried[k] for k in chosen]
    labels = _labels(names)
    if not chosen:
        con.execute("CREATE OR REPLACE TEMP TABLE __item_text (i VARCHAR, txt VARCHAR)")
        return {"columns": [], "template": "", "items": 0, "conflicts": {}, "left_out": left_out}
    order = "epoch_us(ts)::HUGEINT * 10000000000 + row"  # by timestamp, then row: the latest value wins
    latest = ", ".join(f"arg_max(d{k}, {order}) FILTER (WHERE d{k} IS NOT NULL) AS d{k}" for k in chosen)
    kinds = [_kind(p.carried[k], stats[k]["numeric"]) for k in chosen]
    parts = ", ".join(
        f"CASE WHEN d{k} IS NOT NULL THEN {sql_str(label + ': ')} || {_render_sql(f'd{k}', kind)} END"
        for k, kind, label in zip(chosen, kinds, labels)
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __item_text AS SELECT i, txt FROM (SELECT i, concat_ws("
        f"{sql_str(SEPARATOR)}, {parts}) AS txt FROM (SELECT i, {latest} FROM {checked} WHERE reason IS NULL "
        "GROUP BY i)) WHERE txt <> ''"
    )
    described = con.execute("SELECT count(*) FROM __item_text").fetchone()
    return {
        "columns": names,
        "template": SEPARATOR.join(f"{label}: {{{c}}}" for c, label in zip(names, labels)),
        "items": int(described[0]) if described else 0,
        "conflicts": {p.carried[k]: int(stats[k]["conflicts"]) for k in chosen},
        "left_out": left_out,
    }


def _stats(con: duckdb.DuckDBPyConnection, p: ItemTextPlan, checked: str) -> list[dict[str, Any]]:
    """Per carried column, in one pass over the accepted rows grouped by item: the share of rows with a value, the
    items met on two rows or more with one, those whose values conflict, and whether every value is a number."""
    ks = range(len(p.carried))
    per_item = ", ".join(
        f"min(d{k}) <> max(d{k}) AS n{k}, count(d{k}) AS m{k}, "
        f"bool_and(d{k} IS NULL OR regexp_full_match(d{k}, {sql_str(_NUMBER.pattern)})) AS num{k}"
        for k in ks
    )
    totals = ", ".join(
        f"sum(m{k}) / greatest(sum(rows), 1), count(*) FILTER (WHERE m{k} >= 2), "
        f"count(*) FILTER (WHERE n{k}), bool_and(num{k})"
        for k in ks
    )
    row = con.execute(
        f"SELECT {totals} FROM (SELECT count(*) AS rows, {per_item} FROM {checked} WHERE reason IS NULL GROUP BY i)"
    ).fetchone()
    values = list(row) if row else [0, 0, 0, True] * len(ks)
    return [
        {
            "filled": float(values[4 * k] or 0),
            "repeated": int(values[4 * k + 1] or 0),
            "conflicts": int(values[4 * k + 2] or 0),
            "numeric": bool(values[4 * k + 3]),
        }
        for k in ks
    ]


def _auto(p: ItemTextPlan, stats: list[dict[str, Any]]) -> tuple[list[int], dict[str, str]]:
    """The carried columns that describe items, and why each other one was left out."""
    chosen: list[int] = []
    left_out: dict[str, str] = {}
    for k, s in enumerate(stats):
        stable = 1 - s["conflicts"] / max(s["repeated"], 1)
        if s["filled"] < MIN_FILLED:
            left_out[p.carried[k]] = f"filled on {s['filled']:.0%} of the rows"
        elif s["repeated"] < MIN_REPEATED:
            left_out[p.carried[k]] = f"only {s['repeated']} item(s) with two rows or more: cannot tell"
        elif stable < MIN_STABLE:
            left_out[p.carried[k]] = f"one value per item for {stable:.0%} of the items: not an item attribute"
        elif len(chosen) >= MAX_AUTO_COLUMNS:
            left_out[p.carried[k]] = f"more than {MAX_AUTO_COLUMNS} columns qualify"
        else:
            chosen.append(k)
    return chosen, left_out


def _kind(column: str, numeric: bool) -> str:
    if not numeric:
        return "text"
    return "id" if _ID_SUFFIX.search(column.strip()) else "number"


def _labels(columns: list[str]) -> list[str]:
    """``category_code`` -> ``category``, ``brand_id`` -> ``brand``, ``Item Color`` -> ``item color``; a label
    another column already has keeps its suffix (``category id``)."""
    out: list[str] = []
    for column in columns:
        base = _ID_SUFFIX.sub("", column.strip()) or column.strip()
        label = _spaced(base)
        out.append(label if label not in out else _spaced(column))
    return out


def _spaced(name: str) -> str:
    return re.sub(r"[_\s]+", " ", name).strip().lower() or name


def _render_sql(column: str, kind: str) -> str:
    """SQL of a value as the text reads it: a dotted path with ``>``, an ID as it is, a number as the range of its
    leading digit (34.5 -> ``30–40``, 0.57 -> ``0.5–0.6``)."""
    if kind == "id":
        return column
    if kind == "number":
        x = f"CAST({column} AS DOUBLE)"
        width = f"pow(10, floor(log10(abs({x}))))"
        lo = f"(floor({x} / {width}) * {width})"
        return (
            f"CASE WHEN {x} = 0 OR NOT isfinite({x}) THEN printf('%g', {x}) "
            f"ELSE printf('%g', {lo}) || '–' || printf('%g', {lo} + {width}) END"
        )
    dotted, number = sql_str(_DOTTED.pattern), sql_str(_NUMBER.pattern)
    dotted = f"regexp_full_match({column}, {dotted}) AND NOT regexp_full_match({column}, {number})"
    return f"CASE WHEN {dotted} THEN replace(replace({column}, '.', ' > '), '_', ' ') ELSE {column} END"
