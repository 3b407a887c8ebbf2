"""Load a source file into a DuckDB table, accounting for every record.

:func:`load_source` creates one table from the file in a single pass: the
caller's query is evaluated over the raw VARCHAR columns, so parsing
happens in the same pass as the read. Insertion order is preserved, so the
table's ``rowid + 1`` is the record number. Records the parser cannot use (wrong
column count, broken quoting, a broken JSON line) come back as
:class:`~core.ingest.source.Malformed` instead of being skipped silently; so do the lines
:func:`~core.ingest.screen.screen_source` keeps from DuckDB (over the line limit, holding NUL
bytes), and it refuses a file whose decompressed bytes pass the size cap before DuckDB reads it.
"""

from __future__ import annotations

import re

import duckdb

from core import schema as S
from core.errors import UnusableFileError
from core.ingest.screen import line_too_long, screen_source
from core.ingest.source import MAX_LINE_BYTES, fallback_to_latin1, first_line
from core.ingest.source_info import Malformed, SourceInfo

_JSON_DELIM = "\x01"  # a byte that does not occur in text lines: one column per line
_REJECTS = "rejects_table='__rejects', rejects_scan='__rejects_scan'"
# DuckDB errors caused by the file's content; any other error is a bug and propagates.
_DATA_ERRORS = (
    duckdb.InvalidInputException,
    duckdb.IOException,
    duckdb.ConversionException,
    duckdb.OutOfMemoryException,
    duckdb.SerializationException,
)


def count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    """The single number a ``SELECT count(...)`` query returns."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise RuntimeError(f"a count query returned no row: {sql}")
    return int(row[0])


def quote_ident(name: str) -> str:
    """A DuckDB identifier literal for any column name."""
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def load_source(
    con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str, query: str = "SELECT * FROM {source}"
) -> list[Malformed]:
    """Create ``table`` from the file described by ``info``; return malformed records.

    ``query`` reads the raw VARCHAR columns from the placeholder ``{source}``, so that
    parsing happens in the same pass as the read.
    """
    con.execute("SET preserve_insertion_order = true")  # rowid + 1 = record number
    screened = screen_source(info)  # the size cap, then the lines DuckDB would drop or misread
    try:
        if info.format == "parquet":
            return _load_parquet(con, info, table, query)
        load = _load_jsonl if info.format == "jsonl" else _load_csv
        malformed = load(con, info, table, query)
        if info.encoding == "utf-8" and any(m.error == "invalid unicode" for m in malformed):
            fallback_to_latin1(info)  # bytes beyond the sniffed head are not UTF-8: read again
            con.execute(f"DROP TABLE IF EXISTS {table}")
            malformed = load(con, info, table, query)
        return sorted(screened + malformed, key=lambda m: m.line)
    except _DATA_ERRORS as exc:
        raise UnusableFileError(_read_error(info, exc)) from exc


def _read_error(info: SourceInfo, exc: duckdb.Error) -> str:
    """One clear message for a file DuckDB could not read at all."""
    text = str(exc)
    name = info.path.name
    if "Maximum line size" in text:
        line = text.split("Line:", 1)[1].split()[0] if "Line:" in text else "?"
        return (
            f"{name}: record at line {line} is longer than {MAX_LINE_BYTES // 2**20} MB: "
            "shorten its text field or remove that record"
        )
    if "GZIP" in text.upper() or "gzip" in text:
        return f"{name} is a truncated or corrupt gzip file ({first_line(exc)}): compress the log again"
    if isinstance(exc, duckdb.OutOfMemoryException):
        return f"{name} could not be read within the memory limit ({first_line(exc)}): split the file"
    return f"{name} could not be read as {info.format}: {first_line(exc)}"


def _csv_source(
    info: SourceInfo, columns: list[str], delim: str, quote: str, header: bool, rejects: bool = True
) -> tuple[str, list[object]]:
    cols = "{" + ", ".join(f"{sql_str(c)}: 'VARCHAR'" for c in columns) + "}"
    # An explicit buffer_size keeps the read parallel (the default grows with max_line_size).
    sql = (
        f"read_csv(?, columns={cols}, delim=?, quote=?, escape=?, header=?, auto_detect=false, "
        f"max_line_size={MAX_LINE_BYTES}, buffer_size={MAX_LINE_BYTES}, encoding=?, compression=?, "
        + (f"store_rejects=true, {_REJECTS})" if rejects else "ignore_errors=true)")
    )
    params: list[object] = [
        str(info.data_path),
        delim,
        quote,
        quote,
        header,
        info.encoding,
        "none" if info.read_path else info.compression or "none",  # a copy is decompressed
    ]
    return sql, params


def _create(
    con: duckdb.DuckDBPyConnection, table: str, query: str, source: str, params: list[object] | None = None
) -> None:
    con.execute(f"CREATE TABLE {table} AS " + query.replace("{source}", source), params or [])


def _load_csv(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str, query: str) -> list[Malformed]:
    _drop_rejects(con)
    src, params = _csv_source(info, info.columns, info.delimiter or ",", '"', info.header)
    _create(con, table, query, src, params)
    return _collect_rejects(con, info)


def _load_jsonl(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str, query: str) -> list[Malformed]:
    _drop_rejects(con)
    src, params = _csv_source(info, ["line"], _JSON_DELIM, "", False)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __lines AS SELECT line, CASE WHEN json_valid(line) "
        "THEN json_type(line) = 'OBJECT' ELSE false END AS ok "
        f"FROM {src} WHERE line IS NOT NULL AND trim(line, ' \t\r\n\ufeff') <> ''",
        params,
    )
    malformed = _collect_rejects(con, info)
    bad = con.execute("SELECT rowid + 1, line FROM __lines WHERE NOT ok ORDER BY rowid").fetchall()
    paths = ", ".join(sql_str(_json_path(c)) for c in info.columns)
    fields = ", ".join(f"__v[{k + 1}] AS {quote_ident(c)}" for k, c in enumerate(info.columns))
    source = f"(SELECT {fields} FROM (SELECT json_extract_string(line, [{paths}]) AS __v FROM __lines WHERE ok))"
    _create(con, table, query, source)
    con.execute("DROP TABLE __lines")
    return malformed + [Malformed(line=int(r), error="not a JSON object", raw=str(line)[:300]) for r, line in bad]


def peek_values(con: duckdb.DuckDBPyConnection, info: SourceInfo, column: str, limit: int = 20_000) -> list[str | None]:
    """The distinct raw values of ``column`` among the first ``limit`` records (a cheap sample).

    Records the sample cannot parse are skipped; the full read accounts for them. A Parquet file's column is read
    whole (at most ``limit`` distinct values).
    """
    q = quote_ident(column)
    params: list[object]
    if info.format == "parquet":  # a column read is cheap: every record, so no label is left for a second pass
        sql, params = f"(SELECT CAST({q} AS VARCHAR) AS v FROM read_parquet(?))", [str(info.data_path)]
    elif info.format == "jsonl":
        src, params = _csv_source(info, ["line"], _JSON_DELIM, "", False, rejects=False)
        sql = (
            f"(SELECT json_extract_string(line, {sql_str(_json_path(column))}) AS v FROM "
            f"(SELECT line FROM {src} LIMIT {limit}) WHERE coalesce(json_valid(line), false))"
        )
    else:
        src, params = _csv_source(info, info.columns, info.delimiter or ",", '"', info.header, rejects=False)
        sql = f"(SELECT {q} AS v FROM {src} LIMIT {limit})"
    try:
        return [r[0] for r in con.execute(f"SELECT DISTINCT v FROM {sql} LIMIT {limit}", params).fetchall()]
    except _DATA_ERRORS:
        return []


def _load_parquet(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str, query: str) -> list[Malformed]:
    path = str(info.data_path)
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
    kinds = {row[0]: str(row[1]) for row in described}
    casts = ", ".join(_varchar(c, kinds.get(c, "VARCHAR")) for c in info.columns)
    _create(con, table, query, f"(SELECT {casts} FROM read_parquet(?))", [path])
    return []


def _varchar(col: str, kind: str) -> str:
    """Cast a Parquet column to text; integral floats lose their '.0' (IDs stored as float)."""
    q = quote_ident(col)
    if kind.upper() in ("DOUBLE", "FLOAT", "REAL"):
        return (
            f"CASE WHEN isfinite({q}) AND {q} = trunc({q}) AND abs({q}) < 9e15 "
            f"THEN CAST(CAST({q} AS BIGINT) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END AS {q}"
        )
    return f"CAST({q} AS VARCHAR) AS {q}"


def _drop_rejects(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS __rejects")
    con.execute("DROP TABLE IF EXISTS __rejects_scan")


def _collect_rejects(con: duckdb.DuckDBPyConnection, info: SourceInfo) -> list[Malformed]:
    rows = con.execute(
        "SELECT line, any_value(error_type), any_value(error_message), any_value(csv_line) "
        "FROM __rejects GROUP BY line ORDER BY line"
    ).fetchall()
    out = [
        Malformed(line=int(line), error=_describe(kind, msg), raw=str(raw or "")[:300], reason=_reason(kind))
        for line, kind, msg, raw in rows
    ]
    unterminated = [m.line for m in out if m.error == "unterminated quote"]
    if unterminated:
        info.warnings.append(
            f"an unterminated quote at line {unterminated[0]} swallowed the rest of its record; "
            "check the quoting of that line in the source file"
        )
    return out


def _reason(kind: str) -> str:
    return S.R_LINE_TOO_LONG if str(kind or "").upper() == "LINE SIZE OVER MAXIMUM" else S.R_MALFORMED


def _describe(kind: str, message: str) -> str:
    kind = str(kind or "").upper()
    if kind == "LINE SIZE OVER MAXIMUM":  # a record under the screen's line limit on each of its lines
        size = re.search(r"Actual Size:\s*(\d+)", str(message))
        return line_too_long(int(size.group(1)) if size else None)
    if kind == "UNQUOTED VALUE":
        return "unterminated quote"
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        return f"wrong number of fields ({str(message).strip()})"
    if kind == "INVALID ENCODING" or "unicode" in str(message).lower():
        return "invalid unicode"
    return f"{kind.lower() or 'parse error'}: {str(message).strip()}"


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
