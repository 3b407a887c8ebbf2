"""Ingest an interaction log into the workspace, losing no row without a reason.

Reading, parsing and validation run in a private in-memory DuckDB, so raw user
IDs never touch the workspace files; only the accepted, pseudonymized rows are
written, in one transaction, under the workspace lock. The returned
:class:`IngestReport` always satisfies ``rows_read == rows_accepted + rows_rejected``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core import schema as S
from core.catalogue import read_catalogue
from core.errors import DataError, UnusableFileError
from core.ingest_report import IngestReport, build_report
from core.mapping import map_behavior_labels, parse_behavior_codes, resolve_mapping
from core.reader import load_source
from core.source import SourceInfo, inspect_source
from core.validation import Rules, parse_select, reason_expr
from core.workspace import Workspace, validate_name

Progress = Callable[[str, float], None]


@dataclass
class IngestOptions:
    """Settings of one ingest; every field has a CLI flag of the same meaning."""

    name: str | None = None
    columns: list[str] | None = None
    mapping: dict[str, str | None] = field(default_factory=dict)
    behavior_codes: dict[str, str] | str | None = None
    keep_ids: bool = False
    default_behavior: str | None = None
    rating_range: tuple[float, float] = S.DEFAULT_RATING_RANGE
    time_format: str | None = None
    drop_duplicates: bool = False
    items_id_column: str | None = None
    memory_limit: str = "1GB"


def default_name(path: str | os.PathLike[str]) -> str:
    """A dataset name from a file name: ``events.csv.gz`` -> ``events``."""
    stem = Path(path).name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".parquet", ".jsonl", ".json", ".ndjson", ".data"):
        stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-") or "dataset"
    return stem[:64]


def inspect(path: str | os.PathLike[str], columns: list[str] | None = None) -> tuple[SourceInfo, dict[str, str]]:
    """Detect a file's layout and guess its column mapping (for the mapping step in the UI)."""
    info = inspect_source(path, columns)
    return info, resolve_mapping(info.columns)


def ingest(workspace: Workspace, events: str | os.PathLike[str], items: str | os.PathLike[str] | None = None,
           options: IngestOptions | None = None, *, source_names: list[str] | None = None,
           progress: Progress | None = None) -> IngestReport:
    """Read, validate, pseudonymize and store one event log (and optional item catalogue)."""
    opts = options or IngestOptions()
    started = time.perf_counter()
    say = progress or (lambda stage, frac: None)
    name = validate_name(opts.name or default_name(source_names[0] if source_names else events))
    say("reading", 0.05)
    info = inspect_source(events, opts.columns)
    mapping = resolve_mapping(info.columns, opts.mapping)
    _require_ids(info, mapping)
    rules = _rules(info, mapping, opts)
    tmp = tempfile.mkdtemp(prefix="behaviorlens-ingest-")
    con = duckdb.connect(config={"memory_limit": opts.memory_limit, "temp_directory": tmp})
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute("SET preserve_insertion_order=false")
        malformed = load_source(con, info, "p1", parse_select(rules))
        say("validating", 0.4)
        codes = parse_behavior_codes(opts.behavior_codes)
        _classify(con, rules, codes, opts.drop_duplicates)
        catalogue = read_catalogue(con, items, opts.items_id_column) if items is not None else None
        say("pseudonymizing", 0.6)
        _user_table(con, workspace, opts.keep_ids)
        _item_rows(con, catalogue)
        report = build_report(con, name, info, mapping, rules, malformed, codes, opts, catalogue, source_names)
        if report.rows_read == 0:
            raise UnusableFileError(f"{info.path.name} has no data rows (only a header?): nothing to ingest")
        say("writing", 0.8)
        report.replaced = _write(con, workspace, name, report)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    say("done", 1.0)
    return report


def _require_ids(info: SourceInfo, mapping: dict[str, str]) -> None:
    for fld in S.REQUIRED_FIELDS:
        if fld not in mapping:
            hint = " The file seems to have no header: name its columns with --columns." if not info.header else ""
            raise UnusableFileError(
                f"no {fld} column found in {info.path.name} among {info.columns}: map one with "
                f"--map {fld}=COLUMN.{hint}"
            )


def _rules(info: SourceInfo, mapping: dict[str, str], opts: IngestOptions) -> Rules:
    lo, hi = opts.rating_range
    if not lo < hi:
        raise DataError(f"rating range {opts.rating_range}: the low end must be below the high end")
    default = opts.default_behavior
    if S.BEHAVIOR not in mapping and default is None:
        default = S.RATE if S.VALUE in mapping else S.VIEW
    if default is not None:
        default = parse_behavior_codes({"default": default})["default"]
    return Rules(
        mapping=mapping,
        default_behavior=default,
        rating_range=(float(lo), float(hi)),
        decimal_comma=info.delimiter == ";",
        time_format=opts.time_format,
    )


def _classify(con: duckdb.DuckDBPyConnection, rules: Rules, codes: dict[str, str], drop_dupes: bool) -> None:
    """Map behavior labels and attach each row's rejection reason: table ``parsed``."""
    labels = [r[0] for r in con.execute("SELECT DISTINCT b_raw FROM p1").fetchall()]
    mapped = map_behavior_labels(labels, codes)
    bmap = pd.DataFrame({"raw": list(mapped.keys()), "b": list(mapped.values())}, dtype="string")
    con.register("__bmap_df", bmap)
    con.execute("CREATE TABLE __bmap AS SELECT * FROM __bmap_df")
    con.unregister("__bmap_df")
    con.execute(
        f"CREATE TABLE parsed AS SELECT p1.*, m.b AS b, {reason_expr(rules, 'm.b')} AS reason "
        "FROM p1 LEFT JOIN __bmap m ON p1.b_raw IS NOT DISTINCT FROM m.raw"
    )
    con.execute("DROP TABLE p1")
    if drop_dupes:
        con.execute(
            f"UPDATE parsed SET reason = '{S.R_DUPLICATE}' WHERE row IN (SELECT row FROM ("
            "SELECT row, row_number() OVER (PARTITION BY u, i, ts, b, v, t ORDER BY row) AS k "
            "FROM parsed WHERE reason IS NULL) WHERE k > 1)"
        )


def _user_table(con: duckdb.DuckDBPyConnection, workspace: Workspace, keep_ids: bool) -> None:
    """Table ``__users(raw, uid)``: the stored ID of every accepted user."""
    raw = [r[0] for r in con.execute("SELECT DISTINCT u FROM parsed WHERE reason IS NULL").fetchall()]
    stored = list(raw) if keep_ids else workspace.pseudonymize(raw)
    if len(set(stored)) != len(stored):
        raise DataError("two user IDs got the same pseudonym; ingest again with --keep-ids or report this")
    frame = pd.DataFrame({"raw": raw, "uid": stored}, dtype="string")
    con.register("__users_df", frame)
    con.execute("CREATE TABLE __users AS SELECT * FROM __users_df")
    con.unregister("__users_df")


def _write(con: duckdb.DuckDBPyConnection, workspace: Workspace, name: str, report: IngestReport) -> bool:
    """Store events, items and the dataset row in one transaction; True if it replaced one."""
    with workspace.lock():
        con.execute(f"ATTACH '{_sql_path(workspace.db_path)}' AS ws")
        try:
            replaced = con.execute("SELECT count(*) FROM ws.datasets WHERE name = ?", [name]).fetchone()[0] > 0
            con.execute("BEGIN TRANSACTION")
            for table in ("events", "items"):
                con.execute(f"DELETE FROM ws.{table} WHERE {S.DATASET} = ?", [name])
            con.execute("DELETE FROM ws.datasets WHERE name = ?", [name])
            con.execute(
                f"INSERT INTO ws.events SELECT ?, p.row, us.uid, p.i, p.ts, p.b, p.v, p.t "
                "FROM parsed p JOIN __users us ON p.u = us.raw WHERE p.reason IS NULL",
                [name],
            )
            con.execute("INSERT INTO ws.items SELECT ?, * FROM __items", [name])
            con.execute("INSERT INTO ws.datasets VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?)", report.dataset_row())
            con.execute("COMMIT")
            con.execute("CHECKPOINT ws")
        finally:
            con.execute("DETACH ws")
    return bool(replaced)


def _item_rows(con: duckdb.DuckDBPyConnection, catalogue: tuple[pd.DataFrame, dict[str, Any]] | None) -> None:
    """Table ``__items``: catalogue rows plus every event item missing from the catalogue."""
    cols = f"{S.ITEM_ID}, {S.ITEM_TITLE}, {S.ITEM_CATEGORY}, {S.ITEM_TEXT}, {S.ITEM_ATTRS}"
    if catalogue is None:
        frame = pd.DataFrame(columns=cols.split(", "), dtype="string")
    else:
        frame = catalogue[0].astype("string")
    con.register("__cat_df", frame)
    con.execute(
        f"CREATE TABLE __items AS SELECT {cols} FROM __cat_df UNION ALL "
        f"SELECT DISTINCT i, i, NULL, '', NULL FROM parsed WHERE reason IS NULL "
        f"AND i NOT IN (SELECT {S.ITEM_ID} FROM __cat_df)"
    )
    con.unregister("__cat_df")


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
