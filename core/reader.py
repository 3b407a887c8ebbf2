"""Load a source file into a DuckDB table of VARCHAR columns, accounting for every record.

The table has a ``__row`` column (1-based record number) and one VARCHAR column
per source column. Records the parser cannot use (wrong column count, broken
quoting, a broken JSON line) are returned as :class:`~core.source.Malformed`
instead of being skipped silently.
"""

from __future__ import annotations

import duckdb

from core.errors import UnusableFileError
from core.source import MAX_LINE_BYTES, ROW, Malformed, SourceInfo, fallback_to_latin1, first_line

_JSON_DELIM = "\x01"  # a byte that does not occur in text lines: one column per line


def quote_ident(name: str) -> str:
    """A DuckDB identifier literal for any column name."""
    return '"' + name.replace('"', '""') + '"'


def load_source(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str,
                select: str | None = None) -> list[Malformed]:
    """Create ``table`` from the file described by ``info``; return malformed records.

    ``select`` is an optional SQL select-list evaluated over the raw VARCHAR columns
    (plus ``__row``) so that callers can parse in the same pass as the read.
    """
    try:
        if info.format == "parquet":
            return _load_parquet(con, info, table, select)
        if info.format == "jsonl":
            return _load_jsonl(con, info, table, select)
        malformed = _load_csv(con, info, table, select)
        if info.encoding == "utf-8" and any("unicode" in m.error.lower() for m in malformed):
            fallback_to_latin1(info)
            con.execute(f"DROP TABLE IF EXISTS {table}")
            malformed = _load_csv(con, info, table, select)
        return malformed
    except duckdb.Error as exc:
        raise UnusableFileError(f"{info.path.name} could not be read as {info.format}: {first_line(exc)}") from exc


def _csv_args(info: SourceInfo, columns: dict[str, str], delim: str, quote: str) -> tuple[str, list[object]]:
    cols = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in columns) + "}"
    args = (
        f"?, columns={cols}, delim=?, quote=?, escape=?, header=?, auto_detect=false, "
        f"max_line_size={MAX_LINE_BYTES}, encoding=?, compression=?, store_rejects=true, "
        "rejects_table='__rejects', rejects_scan='__rejects_scan'"
    )
    params: list[object] = [
        str(info.path), delim, quote, quote, info.header,
        info.encoding, info.compression or "none",
    ]
    return args, params


def _load_csv(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str,
              select: str | None) -> list[Malformed]:
    _drop_rejects(con)
    args, params = _csv_args(info, dict.fromkeys(info.columns), info.delimiter or ",", '"')
    inner = f"SELECT row_number() OVER () AS {ROW}, * FROM read_csv({args})"
    con.execute(f"CREATE TABLE {table} AS SELECT {select or '*'} FROM ({inner})", params)
    return _collect_rejects(con, info)


def _load_jsonl(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str,
                select: str | None) -> list[Malformed]:
    _drop_rejects(con)
    args, params = _csv_args(info, {"line": "VARCHAR"}, _JSON_DELIM, "")
    params[4] = False  # no header line in JSON lines
    con.execute(
        f"CREATE TEMP TABLE __lines AS SELECT row_number() OVER () AS {ROW}, line "
        f"FROM read_csv({args}) WHERE line IS NOT NULL AND trim(line) <> ''",
        params,
    )
    bad = con.execute(
        f"SELECT {ROW}, line FROM __lines WHERE NOT coalesce(json_valid(line), false) "
        f"OR json_type(line) <> 'OBJECT' ORDER BY {ROW}"
    ).fetchall()
    fields = ", ".join(
        f"json_extract_string(line, {_sql_str(_json_path(c))}) AS {quote_ident(c)}" for c in info.columns
    )
    inner = (
        f"SELECT {ROW}, {fields} FROM __lines WHERE coalesce(json_valid(line), false) "
        "AND json_type(line) = 'OBJECT'"
    )
    con.execute(f"CREATE TABLE {table} AS SELECT {select or '*'} FROM ({inner})")
    con.execute("DROP TABLE __lines")
    return [Malformed(line=int(r), error="not a JSON object", raw=str(line)[:300]) for r, line in bad]


def _load_parquet(con: duckdb.DuckDBPyConnection, info: SourceInfo, table: str,
                  select: str | None) -> list[Malformed]:
    described = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(info.path)]).fetchall()
    kinds = {row[0]: str(row[1]) for row in described}
    casts = ", ".join(_varchar(c, kinds.get(c, "VARCHAR")) for c in info.columns)
    inner = f"SELECT row_number() OVER () AS {ROW}, {casts} FROM read_parquet(?)"
    con.execute(f"CREATE TABLE {table} AS SELECT {select or '*'} FROM ({inner})", [str(info.path)])
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
        Malformed(line=int(line), error=_describe(kind, msg), raw=str(raw or "")[:300])
        for line, kind, msg, raw in rows
    ]
    if any(m.error.startswith("unterminated quote") for m in out):
        first = next(m.line for m in out if m.error.startswith("unterminated quote"))
        info.warnings.append(
            f"an unterminated quote at line {first} swallowed the rest of its record; "
            "check the quoting of that line in the source file"
        )
    return out


def _describe(kind: str, message: str) -> str:
    kind = str(kind or "").upper()
    if kind == "UNQUOTED VALUE":
        return "unterminated quote"
    if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        return f"wrong number of fields ({str(message).strip()})"
    if kind == "INVALID ENCODING" or "unicode" in str(message).lower():
        return "invalid unicode"
    return f"{kind.lower() or 'parse error'}: {str(message).strip()}"


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
