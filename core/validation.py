"""Row validation as one SQL select-list: parse every field and name the first problem.

The expressions run inside DuckDB in the same pass as the read. Each row gets
parsed fields (``u``, ``i``, ``ts``, ``b_raw``, ``v``, ``t``) and a ``reason``:
NULL when the row is accepted, else one of the ``schema.R_*`` keys. Rejected
rows also keep their raw text fields in ``raw`` for the report's examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import schema as S
from core.reader import quote_ident
from core.source import ROW

# Seconds-since-epoch bounds for numeric timestamps (years 1900..9999).
_MIN_EPOCH_S = -2_208_988_800
_MAX_EPOCH_S = 253_402_300_799


@dataclass(frozen=True)
class Rules:
    """What a valid row is, for one ingest."""

    mapping: dict[str, str]
    default_behavior: str | None  # used when no behavior column is mapped
    rating_range: tuple[float, float]
    decimal_comma: bool
    time_format: str | None


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _col(rules: Rules, fld: str) -> str | None:
    col = rules.mapping.get(fld)
    return None if col is None else quote_ident(col)


def _id_expr(rules: Rules, fld: str) -> str:
    col = _col(rules, fld)
    return f"nullif(trim({col}), '')" if col else "CAST(NULL AS VARCHAR)"


def _missing(expr: str) -> str:
    tokens = ", ".join(_lit(t) for t in S.NULL_TOKENS)
    return f"({expr} IS NULL OR lower({expr}) IN ({tokens}))"


def _timestamp_expr(rules: Rules) -> str:
    """Epoch s/ms/us/ns numbers, ISO 8601 (with or without zone), '... UTC', or a format."""
    col = _col(rules, S.TIMESTAMP)
    if col is None:  # file order stands in for time: one second per record
        return f"(TIMESTAMP '1970-01-01' + to_seconds({ROW}))"
    raw = f"trim({col})"
    if rules.time_format:
        return f"try_strptime({raw}, {_lit(rules.time_format)})"
    num = f"try_cast({raw} AS DOUBLE)"
    secs = (
        f"(CASE WHEN abs({num}) >= 1e17 THEN {num} / 1e9 WHEN abs({num}) >= 1e14 THEN {num} / 1e6 "
        f"WHEN abs({num}) >= 1e11 THEN {num} / 1e3 ELSE {num} END)"
    )
    return (
        f"(CASE WHEN {num} IS NOT NULL THEN (CASE WHEN isfinite({num}) AND {secs} BETWEEN "
        f"{_MIN_EPOCH_S} AND {_MAX_EPOCH_S} THEN make_timestamp(CAST(round({secs} * 1e6) AS BIGINT)) END) "
        f"ELSE CAST(try_cast({raw} AS TIMESTAMPTZ) AS TIMESTAMP) END)"
    )


def _value_expr(rules: Rules) -> tuple[str, str]:
    """(parsed DOUBLE, raw text) expressions for the value column."""
    col = _col(rules, S.VALUE)
    if col is None:
        return "CAST(NULL AS DOUBLE)", "CAST(NULL AS VARCHAR)"
    raw = f"nullif(trim({col}), '')"
    text = f"replace({raw}, ',', '.')" if rules.decimal_comma else raw
    return f"try_cast({text} AS DOUBLE)", raw


def parse_select(rules: Rules) -> str:
    """The select-list that parses raw columns into typed fields (no reason yet)."""
    ts_col = _col(rules, S.TIMESTAMP)
    b_col = _col(rules, S.BEHAVIOR)
    t_col = _col(rules, S.TEXT)
    v, v_raw = _value_expr(rules)
    parts = [
        f"{ROW} AS row",
        f"{_id_expr(rules, S.USER_ID)} AS u",
        f"{_id_expr(rules, S.ITEM_ID)} AS i",
        f"{_timestamp_expr(rules)} AS ts",
        (f"trim({ts_col})" if ts_col else "CAST(NULL AS VARCHAR)") + " AS ts_raw",
        (f"{b_col}" if b_col else _lit(rules.default_behavior or S.VIEW)) + " AS b_raw",
        f"{v} AS v",
        f"{v_raw} AS v_raw",
        (f"nullif({t_col}, '')" if t_col else "CAST(NULL AS VARCHAR)") + " AS t",
    ]
    return ", ".join(parts)


def reason_expr(rules: Rules, behavior: str = "b") -> str:
    """CASE expression naming the first problem of a parsed row (NULL = accepted)."""
    lo, hi = rules.rating_range
    has_ts = S.TIMESTAMP in rules.mapping
    rating = ", ".join(_lit(b) for b in sorted(S.RATING_BEHAVIORS))
    checks = [
        (_missing("u"), S.R_MISSING_USER),
        (_missing("i"), S.R_MISSING_ITEM),
        (f"(length(u) > {S.MAX_ID_LENGTH} OR length(i) > {S.MAX_ID_LENGTH})", S.R_ID_TOO_LONG),
        ("(ts_raw IS NULL OR ts_raw = '')" if has_ts else "false", S.R_MISSING_TIME),
        ("ts IS NULL", S.R_BAD_TIME),
        (f"{behavior} IS NULL", S.R_MISSING_BEHAVIOR),
        ("(v_raw IS NOT NULL AND (v IS NULL OR NOT isfinite(v)))", S.R_BAD_VALUE),
        (f"({behavior} = {_lit(S.RATE)} AND v_raw IS NULL)", S.R_MISSING_RATING),
        (f"({behavior} IN ({rating}) AND v IS NOT NULL AND (v < {lo} OR v > {hi}))", S.R_RATING_RANGE),
    ]
    whens = " ".join(f"WHEN {cond} THEN {_lit(reason)}" for cond, reason in checks)
    return f"CASE {whens} END"
