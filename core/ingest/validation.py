"""Row validation in SQL: parse every field and name the first problem of each row.

Two steps, both inside DuckDB:

1. :func:`parse_query` runs in the same pass as the file read and materializes
   table ``parsed``: ``u``, ``i`` (trimmed IDs), ``ts`` (UTC TIMESTAMP), ``b_raw``
   (the behavior label as written), ``v`` (DOUBLE), ``t`` (text), ``h`` (a hash
   of the fields, for duplicates) and, for rows whose timestamp or value did not
   parse, the raw text in ``ts_raw`` / ``v_raw`` for the report's examples.
   The same pass maps behavior labels to ``b`` and names each row's final
   ``reason``: labels are few, so those seen in a sample of the file are mapped
   in Python first and written into the query as a CASE.
2. :func:`finish_labels` maps any label the sample missed (an UPDATE of those
   rows only) and defines view ``checked``: ``row`` is the record number.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from core import schema as S
from core.ingest.mapping import map_behavior_labels
from core.ingest.reader import quote_ident, sql_str

PARSED = "parsed"
CHECKED = "checked"
EPOCH_ZERO = "TIMESTAMP '1970-01-01'"
# Seconds-since-epoch bounds for numeric timestamps (1900-01-01 .. 2200-01-01 UTC).
_MIN_EPOCH_S = -2_208_988_800
_MAX_EPOCH_S = 7_258_118_400
_MAX_CASE_LABELS = 64  # sampled labels written into the read pass; finish_labels maps the rest


@dataclass(frozen=True)
class Rules:
    """What a valid row is, for one ingest."""

    mapping: dict[str, str]
    default_behavior: str | None  # used when no behavior column is mapped
    rating_range: tuple[float, float]
    decimal_comma: bool
    time_format: str | None
    carried: tuple[str, ...] = ()  # SQL of extra fields read along (``... AS d0``: core.ingest.item_text)
    numeric: frozenset[str] = frozenset()  # fields read from number columns (Parquet): their text is never padded


def _col(rules: Rules, fld: str) -> str | None:
    col = rules.mapping.get(fld)
    return None if col is None else quote_ident(col)


def _raw_fields(rules: Rules) -> str:
    """Level 1: trimmed text of every mapped column (no parsing yet)."""

    def trimmed(fld: str) -> str:
        col = _col(rules, fld)
        if col is None:
            return "CAST(NULL AS VARCHAR)"
        # a number's text has no spaces and is never empty (trimming 10M IDs and times was a tenth of the read)
        return col if fld in rules.numeric else f"nullif(trim({col}), '')"

    b_col = _col(rules, S.BEHAVIOR)
    t_col = _col(rules, S.TEXT)
    return ", ".join(
        [
            f"{trimmed(S.USER_ID)} AS u",
            f"{trimmed(S.ITEM_ID)} AS i",
            f"{trimmed(S.TIMESTAMP)} AS ts_raw",
            f"{b_col if b_col else sql_str(rules.default_behavior or S.VIEW)} AS b_raw",
            f"{trimmed(S.VALUE)} AS v_raw",
            f"nullif({t_col}, '') AS t" if t_col else "CAST(NULL AS VARCHAR) AS t",
            *rules.carried,
        ]
    )


def _numbers(rules: Rules) -> str:
    """Level 2: the timestamp as epoch seconds (from s, ms, us or ns by magnitude) and the value."""
    value = "replace(v_raw, ',', '.')" if rules.decimal_comma else "v_raw"
    epoch = S.TIMESTAMP in rules.mapping and not rules.time_format
    return (
        f"{'try_cast(ts_raw AS DOUBLE)' if epoch else 'CAST(NULL AS DOUBLE)'} AS ts_num, "
        f"try_cast({value} AS DOUBLE) AS v_num"
    )


_SECONDS = (
    "CASE WHEN abs(ts_num) < 1e11 THEN ts_num WHEN abs(ts_num) < 1e14 THEN ts_num / 1e3 "
    "WHEN abs(ts_num) < 1e17 THEN ts_num / 1e6 ELSE ts_num / 1e9 END"
)


def _timestamp_expr(rules: Rules) -> str:
    """Epoch s/ms/us/ns numbers, ISO 8601 (with or without zone), '... UTC', or a format.

    Reads ``ts_raw`` and ``secs`` (the number scaled to seconds by ``_SECONDS``).
    """
    if S.TIMESTAMP not in rules.mapping:
        return "CAST(NULL AS TIMESTAMP)"  # the view puts file order in its place
    if rules.time_format:
        fmt = sql_str(rules.time_format)
        # Dates kept as numbers lose a leading zero (0511 -> 511): retry those zero-padded.
        return (
            f"CAST(coalesce(try_strptime(ts_raw, {fmt}), CASE WHEN regexp_full_match(ts_raw, '[0-9]+') "
            f"THEN try_strptime('0' || ts_raw, {fmt}) END) AS TIMESTAMP)"
        )
    return (
        f"CASE WHEN secs IS NULL THEN CAST(try_cast(ts_raw AS TIMESTAMPTZ) AS TIMESTAMP) "
        f"WHEN secs BETWEEN {_MIN_EPOCH_S} AND {_MAX_EPOCH_S} "
        "THEN make_timestamp(CAST(round(secs * 1e6) AS BIGINT)) END"
    )


def _missing(expr: str) -> str:
    """NULL or a null token (any case); the byte-length test spares lower() on most IDs."""
    tokens = [t for t in S.NULL_TOKENS if t]
    lengths = ", ".join(str(n) for n in sorted({len(t) for t in tokens}))
    listed = ", ".join(sql_str(t) for t in tokens)
    return f"({expr} IS NULL OR (strlen({expr}) IN ({lengths}) AND lower({expr}) IN ({listed})))"


def _reason0(rules: Rules) -> str:
    """The first problem of a row that does not depend on its behavior (NULL if none)."""
    has_ts = S.TIMESTAMP in rules.mapping
    n = S.MAX_ID_LENGTH  # characters; strlen (bytes, O(1)) >= length spares counting short IDs
    checks = [
        (_missing("u"), S.R_MISSING_USER),
        (_missing("i"), S.R_MISSING_ITEM),
        (f"((strlen(u) > {n} AND length(u) > {n}) OR (strlen(i) > {n} AND length(i) > {n}))", S.R_ID_TOO_LONG),
        ("(ts IS NULL AND ts_raw IS NULL)" if has_ts else "false", S.R_MISSING_TIME),
        ("ts IS NULL" if has_ts else "false", S.R_BAD_TIME),
        ("v_raw IS NOT NULL", S.R_BAD_VALUE),
    ]
    return "CASE " + " ".join(f"WHEN {c} THEN {sql_str(r)}" for c, r in checks) + " END"


def parse_query(rules: Rules, labels: dict[str, str]) -> str:
    """The query (over ``{source}``) that materializes table ``parsed`` in the read pass.

    ``labels`` maps the behavior labels seen in a sample of the file to behaviors;
    rows with other labels get ``b`` NULL here and are completed by :func:`finish_labels`.
    """
    level1 = f"SELECT {_raw_fields(rules)} FROM {{source}}"
    extra = "".join(f", d{k}" for k in range(len(rules.carried)))  # carried through every level
    level2 = f"SELECT *, {_numbers(rules)} FROM ({level1})"
    level2b = f"SELECT *, {_SECONDS} AS secs FROM ({level2})"
    level3 = (
        f"SELECT u, i, {_timestamp_expr(rules)} AS ts, ts_raw, b_raw, "
        "CASE WHEN isfinite(v_num) THEN v_num END AS v, "
        f"CASE WHEN v_raw IS NOT NULL AND NOT coalesce(isfinite(v_num), false) THEN v_raw END AS v_raw, t{extra} "
        f"FROM ({level2b})"
    )
    level4 = (
        f"SELECT u, i, ts, CASE WHEN ts IS NULL THEN ts_raw END AS ts_raw, b_raw, v, v_raw, t{extra}, "
        f"{_reason0(rules)} AS reason0, hash({duplicate_key(rules)}) AS h, {_label_case(labels)} AS b "
        f"FROM ({level3})"
    )
    return f"SELECT * EXCLUDE (reason0), {final_reason(rules, 'b', 'reason0')} AS reason FROM ({level4})"


def _label_case(labels: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {sql_str(raw)} THEN {sql_str(b)}" for raw, b in list(labels.items())[:_MAX_CASE_LABELS])
    return f"CASE b_raw {whens} END" if whens else "CAST(NULL AS VARCHAR)"


def sample_labels(values: list[str | None], codes: dict[str, str]) -> dict[str, str]:
    """Behavior of each sampled raw label (labels that name no behavior are left out)."""
    return {raw: b for raw, b in map_behavior_labels(values, codes).items() if raw is not None and b is not None}


def duplicate_key(rules: Rules) -> str:
    """The columns two rows must share to be exact duplicates (file order is not a timestamp)."""
    return "u, i, b_raw, v, t" + (", ts" if S.TIMESTAMP in rules.mapping else "")


def finish_labels(con: duckdb.DuckDBPyConnection, rules: Rules, codes: dict[str, str]) -> None:
    """Map labels the sample missed, then define view ``checked`` (``row`` = record number)."""
    unseen = [
        r[0]
        for r in con.execute(f"SELECT DISTINCT b_raw FROM {PARSED} WHERE b IS NULL AND b_raw IS NOT NULL").fetchall()
    ]
    mapped = sample_labels(unseen, codes)
    if mapped:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __labels AS SELECT unnest(?) AS raw, unnest(?) AS b",
            [list(mapped), list(mapped.values())],
        )
        con.execute(
            f"UPDATE {PARSED} SET b = l.b, reason = {final_reason(rules, 'l.b', _reason0(rules))} FROM __labels l "
            f"WHERE {PARSED}.b_raw = l.raw AND {PARSED}.b IS NULL"
        )
        con.execute("DROP TABLE __labels")
    ts = "ts" if S.TIMESTAMP in rules.mapping else f"{EPOCH_ZERO} + to_seconds(rowid + 1)"
    extra = "".join(f", d{k}" for k in range(len(rules.carried)))
    con.execute(
        f"CREATE OR REPLACE VIEW {CHECKED} AS SELECT rowid + 1 AS row, u, i, {ts} AS ts, ts_raw, b_raw, b, "
        f"v, v_raw, t, h, reason{extra} FROM {PARSED}"
    )


def final_reason(rules: Rules, b: str, reason0: str) -> str:
    """A row's first problem: ``reason0``, else one that depends on its behavior ``b``.

    ``reason0`` is the column or the expression (over stored columns) of the first part.
    """
    lo, hi = rules.rating_range
    rating = ", ".join(sql_str(x) for x in sorted(S.RATING_BEHAVIORS))
    return (
        f"coalesce({reason0}, CASE WHEN {b} IS NULL THEN {sql_str(S.R_MISSING_BEHAVIOR)} "
        f"WHEN {b} = {sql_str(S.RATE)} AND v IS NULL THEN {sql_str(S.R_MISSING_RATING)} "
        f"WHEN {b} IN ({rating}) AND (v < {lo!r} OR v > {hi!r}) THEN {sql_str(S.R_RATING_RANGE)} END)"
    )


def mark_duplicates(con: duckdb.DuckDBPyConnection, rules: Rules) -> None:
    """Give later exact copies of an accepted row the reason 'duplicate' (first copy kept)."""
    con.execute(
        f"UPDATE {PARSED} SET reason = {sql_str(S.R_DUPLICATE)} WHERE rowid IN (SELECT rid FROM "
        f"(SELECT rowid AS rid, row_number() OVER (PARTITION BY {duplicate_key(rules)} ORDER BY rowid) AS k "
        f"FROM {PARSED} WHERE reason IS NULL) WHERE k > 1)"
    )
