"""Ingest an interaction log into the workspace, losing no row without a reason.

Reading, parsing and validation run in a private in-memory DuckDB (spilling to a
private temp folder outside the workspace), so raw user IDs never touch the
workspace files; only the accepted, pseudonymized rows are written, in one
transaction, under the workspace lock. The returned :class:`IngestReport`
always satisfies ``rows_read == rows_accepted + rows_rejected``.

The file is read and parsed in one pass into table ``parsed``; every later step
(behavior mapping, pseudonyms, the report, the write) reads the view ``checked``
over it, so the log is materialized once.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from core import schema as S
from core.errors import DataError, UnmappedFieldError, UnusableFileError
from core.ingest import item_text
from core.ingest.advice import Hint, Notice
from core.ingest.append import append_mapping, append_options, append_rows, attached, check_layout, mark_stored
from core.ingest.catalogue import item_rows, read_catalogue
from core.ingest.mapping import canonical_behavior, parse_behavior_codes, resolve_mapping
from core.ingest.options import MEMORY_ENV, IngestOptions
from core.ingest.reader import count, load_source, peek_values
from core.ingest.report import IngestJob, IngestReport, build_report
from core.ingest.source import inspect_source
from core.ingest.source_info import SourceInfo
from core.ingest.validation import (
    CHECKED,
    PARSED,
    Rules,
    finish_labels,
    mark_duplicates,
    parse_query,
    sample_labels,
)
from core.progress import ProgressFn
from core.progress import report as notify
from core.store import audit
from core.store.lineage import set_rows_end
from core.store.scratch import scratch_dir, sweep_scratch
from core.store.versions import before_replace
from core.store.workspace import Workspace, validate_name


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


def ingest(
    workspace: Workspace,
    events: str | os.PathLike[str],
    items: str | os.PathLike[str] | None = None,
    options: IngestOptions | None = None,
    *,
    source_names: list[str] | None = None,
    progress: ProgressFn | None = None,
    actor: str | None = None,
) -> IngestReport:
    """Read, validate, pseudonymize and store one event log (and optional item catalogue); the audit log records
    it for ``actor`` (default: this process's, :func:`core.store.audit.process_actor`)."""
    opts = options or IngestOptions()
    started = time.perf_counter()
    target = None
    if opts.append_to is not None:
        target, opts = append_options(workspace, opts)
    name = validate_name(opts.name or default_name(source_names[0] if source_names else events))
    codes = parse_behavior_codes(opts.behavior_codes)
    notify(progress, "ingest", 0.05, 1.0, stage="reading")
    info = inspect_source(events, opts.columns)
    given = opts.mapping if target is None else append_mapping(target, info.columns, opts.mapping)
    mapping = resolve_mapping(info.columns, given)
    _require_ids(info, mapping)
    if target is not None:
        check_layout(target, mapping)
    described = item_text.plan(info.columns, mapping, opts.item_text_columns)
    rules = _rules(info, mapping, opts, tuple(item_text.carried_fields(described)))
    sweep_scratch()  # what an ingest killed earlier left in the temp folder (raw rows)
    with _scratch(opts.memory_limit) as con:
        labels = _sample_labels(con, info, rules, codes)
        malformed = load_source(con, info, PARSED, parse_query(rules, labels))
        notify(progress, "ingest", 0.4, 1.0, stage="validating")
        finish_labels(con, rules, codes)
        if opts.drop_duplicates:
            mark_duplicates(con, rules)
        catalogue = (
            read_catalogue(con, items, opts.items_id_column, opts.items_text_columns) if items is not None else None
        )
        con.execute("SET preserve_insertion_order = false")  # rows carry their number from here on
        notify(progress, "ingest", 0.6, 1.0, stage="pseudonymizing")
        n_users = _user_table(con, workspace, opts.keep_ids)
        text_report = item_text.build(con, described, CHECKED)
        n_items = item_rows(con, catalogue)
        job = IngestJob(name, info, rules, codes, opts, malformed, catalogue, source_names)
        counts = (n_users, n_items)
        if target is None:
            report = _report(con, job, counts, workspace, text_report)
            notify(progress, "ingest", 0.8, 1.0, stage="writing")
            report.replaced = _write(con, workspace, name, report)
        else:
            with workspace.lock(), attached(con, workspace):  # what is stored, and the write, are one snapshot
                notify(progress, "ingest", 0.7, 1.0, stage="comparing with the stored events")
                mark_stored(con, name, rules, not opts.keep_ids)
                report = _report(con, job, counts, workspace, text_report)
                notify(progress, "ingest", 0.8, 1.0, stage="appending")
                report.appended = append_rows(con, name, report, rules)
    source = ", ".join(source_names or [Path(events).name])
    detail = f"{source}: {report.rows_accepted:,} of {report.rows_read:,} rows accepted, version {report.version}"
    audit.record(workspace, "append" if target is not None else "ingest", name, detail, actor)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    notify(progress, "ingest", 1.0, 1.0, stage="done")
    return report


def _report(
    con: duckdb.DuckDBPyConnection,
    job: IngestJob,
    counts: tuple[int, int],
    workspace: Workspace,
    text_report: dict[str, Any],
) -> IngestReport:
    report = build_report(con, job, counts, _example_user(workspace, job.opts.keep_ids))
    report.item_text = text_report
    if report.rows_read == 0:
        raise UnusableFileError(f"{job.info.path.name} has no data rows (only a header?): nothing to ingest")
    return report


@contextmanager
def _scratch(memory_limit: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB that spills to a private temp folder, removed afterwards."""
    tmp = str(scratch_dir("ingest"))
    try:
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": tmp})
    except duckdb.Error as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{MEMORY_ENV}={memory_limit!r} is not a memory size such as 1GB or 512MB") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        # no progress bar: DuckDB prints it on stdout for a long query, inside a command's JSON output
        con.execute("SET enable_progress_bar = false")
        yield con
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _require_ids(info: SourceInfo, mapping: dict[str, str]) -> None:
    for fld in S.REQUIRED_FIELDS:
        if fld not in mapping:  # each front end says how to pick one (a form field, --map)
            raise UnmappedFieldError(fld, info.path.name, info.columns, info.header)


def _rules(info: SourceInfo, mapping: dict[str, str], opts: IngestOptions, carried: tuple[str, ...] = ()) -> Rules:
    lo, hi = (float(x) for x in opts.rating_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise DataError(f"rating range {opts.rating_range}: expected two finite numbers LO < HI, such as 1,5")
    default = opts.default_behavior
    if default is not None and not str(default).strip():
        raise DataError(Notice(Hint("default_behavior"), " is empty: give a behavior such as view or purchase"))
    if S.BEHAVIOR not in mapping and default is None:
        default = S.RATE if S.VALUE in mapping else S.VIEW
    if default is not None:
        default = canonical_behavior(default)
    if opts.time_format is not None:
        _check_time_format(opts.time_format)
    return Rules(
        mapping=mapping,
        default_behavior=default,
        rating_range=(lo, hi),
        decimal_comma=info.delimiter == ";",
        time_format=opts.time_format,
        carried=carried,
        numeric=frozenset(f for f, column in mapping.items() if column in info.numeric),
    )


def _sample_labels(
    con: duckdb.DuckDBPyConnection, info: SourceInfo, rules: Rules, codes: dict[str, str]
) -> dict[str, str]:
    """Behaviors of the labels in the first records, so the read pass can map them itself."""
    column = rules.mapping.get(S.BEHAVIOR)
    if column is None:
        default = rules.default_behavior or S.VIEW
        return {default: default}
    return sample_labels(peek_values(con, info, column), codes)


def _check_time_format(fmt: str) -> None:
    try:
        duckdb.connect().execute("SELECT try_strptime('2020-01-01', ?)", [fmt]).fetchall()
    except duckdb.Error as exc:
        raise DataError(
            Notice(
                Hint("time_format", value=repr(fmt), given=True),
                f" is not a valid strptime format ({str(exc).splitlines()[0]}): "
                "use codes such as %Y-%m-%d %H:%M:%S or %d/%m/%Y",
            )
        ) from exc


def _user_table(con: duckdb.DuckDBPyConnection, workspace: Workspace, keep_ids: bool) -> int:
    """Table ``__users(raw, uid)``: the stored ID of every accepted user; returns their count."""
    if keep_ids:
        return count(con, f"SELECT count(DISTINCT u) FROM {CHECKED} WHERE reason IS NULL")
    raw = con.sql(f"SELECT DISTINCT u FROM {CHECKED} WHERE reason IS NULL").to_arrow_table().column(0)
    stored = workspace.pseudonymize(raw.to_pylist())
    if len(set(stored)) != len(stored):
        raise DataError(
            Notice("two user IDs got the same pseudonym; ingest again with ", Hint("keep_ids"), " or report this")
        )
    users = pa.table({"raw": raw, "uid": pa.array(stored, pa.string())})
    con.register("__users_arrow", users)
    con.execute("CREATE TABLE __users AS SELECT * FROM __users_arrow")
    con.unregister("__users_arrow")
    return len(stored)


def _example_user(workspace: Workspace, keep_ids: bool) -> Callable[[Any], Any]:
    """How report examples show a user ID: raw with keep_ids, else its pseudonym (null tokens as is)."""

    def show(raw: Any) -> Any:
        if keep_ids or raw is None or str(raw).strip().lower() in S.NULL_TOKENS:
            return raw
        return workspace.pseudonymize([str(raw)])[0]

    return show


def _write(con: duckdb.DuckDBPyConnection, workspace: Workspace, name: str, report: IngestReport) -> bool:
    """Store events, items and the dataset row in one transaction; True if it replaced one."""
    with workspace.lock(), attached(con, workspace):
        replaced = count(con, "SELECT count(*) FROM ws.datasets WHERE name = ?", [name]) > 0
        con.execute("BEGIN TRANSACTION")
        try:
            guard = before_replace(con, name, "ws")  # the runs trained on the rows about to be replaced
            report.version = guard.version
            _replace_rows(con, name, report)
            guard.check(con)  # DatasetInUseError (rolled back) if one of those runs would see other events
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("CHECKPOINT ws")
    return bool(replaced)


def _replace_rows(con: duckdb.DuckDBPyConnection, name: str, report: IngestReport) -> None:
    for table in ("events", "items"):
        con.execute(f"DELETE FROM ws.{table} WHERE {S.DATASET} = ?", [name])
    con.execute("DELETE FROM ws.datasets WHERE name = ?", [name])
    user, join = ("us.uid", " JOIN __users us ON c.u = us.raw") if report.pseudonymized else ("c.u", "")
    con.execute(
        f"INSERT INTO ws.events SELECT ?, c.row, {user}, c.i, c.ts, c.b, c.v, c.t "
        f"FROM {CHECKED} c{join} WHERE c.reason IS NULL",
        [name],
    )
    con.execute("INSERT INTO ws.items SELECT ?, * FROM __items", [name])
    set_rows_end(con, name, count(con, f"SELECT coalesce(max(row), 0) + 1 FROM {CHECKED}"), "ws")  # renumbered
    con.execute("INSERT INTO ws.datasets VALUES (?, now()::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?)", report.dataset_row())
