"""Appending a new log to a stored dataset: ``behaviorlens ingest NEW.csv --append-to DATASET``.

The new file is read, validated and pseudonymized like any ingest, and its report accounts for every
one of its rows (read = accepted + rejected). Then, under the workspace lock and in one transaction:

- a row already stored in the dataset (same user, item, behavior, value, text and, when the log has
  timestamps, timestamp) is rejected with reason ``already_stored``, counted with multiplicity: an
  event stored once and present twice in the new file is added once, so an overlapping export adds
  nothing twice and a real repeat is kept;
- the accepted rows are numbered from the dataset's row end (:func:`core.store.lineage.rows_end`), so
  every run trained before the append keeps reading exactly its own rows (those below its stamp's
  bound), and the append is recorded with the digest of the rows before it;
- items not yet in the dataset's catalogue are added; stored items keep their rows, so the text of
  an item a run was trained on does not change under it;
- the dataset's counts, sources and report (its ``appends`` list) are updated, and its next
  version is made.

The new file must describe the dataset the same way: the same ID mode (pseudonyms or raw IDs), and
timestamps in both or in neither (without them, event order is file order, continued after the
stored rows). Columns the stored mapping names are mapped the same way unless ``--map`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from core import schema as S
from core.errors import DataError
from core.ingest.options import IngestOptions
from core.ingest.reader import count
from core.ingest.report import IngestReport
from core.ingest.validation import CHECKED, PARSED, Rules
from core.store.lineage import record_append, rows_end, set_rows_end
from core.store.versions import events_digest, next_version, stamp_of_digest
from core.store.workspace import DatasetInfo, Workspace


def append_options(workspace: Workspace, opts: IngestOptions) -> tuple[DatasetInfo, IngestOptions]:
    """The dataset appended to and the options of the append: its ID mode; NotFoundError when it is absent."""
    target = workspace.dataset(str(opts.append_to))
    if opts.name is not None and opts.name != target.name:
        raise DataError(
            f"--name {opts.name!r} and --append-to {target.name!r}: an append keeps the dataset's name; give one"
        )
    if opts.keep_ids and target.pseudonymized:
        raise DataError(
            f"--keep-ids: dataset {target.name!r} stores pseudonymized user IDs, so the new rows must be "
            "pseudonymized too (their users must match the stored ones): append without --keep-ids"
        )
    return target, dataclasses.replace(opts, name=target.name, keep_ids=not target.pseudonymized)


def append_mapping(target: DatasetInfo, columns: list[str], given: dict[str, str | None]) -> dict[str, str | None]:
    """The explicit mapping of an append: the stored mapping's fields whose column the new file has, then
    what the analyst gave (which wins)."""
    stored = {f: c for f, c in target.mapping.items() if c in columns}
    return {**stored, **given}


def check_layout(target: DatasetInfo, mapping: dict[str, str]) -> None:
    """Refuse an append whose timestamps would not continue the stored ones."""
    has_time, had_time = S.TIMESTAMP in mapping, S.TIMESTAMP in target.mapping
    if has_time != had_time:
        now = f"the new file's column {mapping[S.TIMESTAMP]!r} holds them" if has_time else "the new file maps none"
        then = "has timestamps" if had_time else "has none (its event order is its file order)"
        fix = "map the timestamp column with --map timestamp=COLUMN" if had_time else "unmap it with --map timestamp="
        raise DataError(
            f"dataset {target.name!r} {then}, but {now}: appended events must be ordered the same way; {fix}"
        )


@contextmanager
def attached(con: duckdb.DuckDBPyConnection, workspace: Workspace) -> Iterator[None]:
    """The workspace database attached to the scratch connection as ``ws`` (hold the workspace lock)."""
    con.execute(f"ATTACH '{str(workspace.db_path).replace(chr(39), chr(39) * 2)}' AS ws")
    try:
        yield
    finally:
        con.execute("DETACH ws")


def mark_stored(con: duckdb.DuckDBPyConnection, name: str, rules: Rules, pseudonymized: bool) -> int:
    """Give accepted rows that dataset ``name`` already stores reason ``already_stored``; -> how many."""
    user, join = ("us.uid", " JOIN __users us ON c.u = us.raw") if pseudonymized else ("c.u", "")
    timed = S.TIMESTAMP in rules.mapping
    key = f"{user}, c.i, c.b, c.v, c.t" + (", c.ts" if timed else "")
    stored_key = f"{S.USER_ID}, {S.ITEM_ID}, {S.BEHAVIOR}, {S.VALUE}, {S.TEXT}" + (f", {S.TIMESTAMP}" if timed else "")
    on = " AND ".join(
        f"o.{a} IS NOT DISTINCT FROM n.{b}"
        for a, b in [(S.USER_ID, "uid"), (S.ITEM_ID, "i"), (S.BEHAVIOR, "b"), (S.VALUE, "v"), (S.TEXT, "t")]
        + ([(S.TIMESTAMP, "ts")] if timed else [])
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __new AS SELECT c.row, {user} AS uid, c.i, c.b, c.v, c.t, c.ts, "
        f"row_number() OVER (PARTITION BY {key} ORDER BY c.row) AS k FROM {CHECKED} c{join} WHERE c.reason IS NULL"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __stored AS SELECT n.row FROM __new n JOIN (SELECT {stored_key}, count(*) AS m "
        f"FROM ws.events WHERE {S.DATASET} = ? AND {S.USER_ID} IN (SELECT DISTINCT uid FROM __new) "
        f"GROUP BY ALL) o ON {on} WHERE n.k <= o.m",
        [name],
    )
    found = count(con, "SELECT count(*) FROM __stored")
    if found:
        con.execute(f"UPDATE {PARSED} SET reason = '{S.R_STORED}' WHERE rowid IN (SELECT row - 1 FROM __stored)")
    con.execute("DROP TABLE __new")
    con.execute("DROP TABLE __stored")
    return found


def append_rows(con: duckdb.DuckDBPyConnection, name: str, report: IngestReport, rules: Rules) -> dict[str, Any]:
    """Add the accepted rows and new items to dataset ``name`` in one transaction (``ws`` attached, the workspace
    lock held); -> the report's ``appended`` section."""
    stored = int(report.rejected_by_reason.get(S.R_STORED, 0))
    out: dict[str, Any] = {"dataset": name, "events_added": 0, "already_stored": stored, "items_added": 0}
    if stored:
        report.warnings.append(
            f"{stored:,} row(s) are already stored in dataset {name!r} (an overlapping export?): not added again "
            f"(reason '{S.R_STORED}')"
        )
    if not report.rows_accepted:
        return {**out, **_counts(con, name)}
    con.execute("BEGIN TRANSACTION")
    try:
        first = rows_end(con, name, "ws")
        before = stamp_of_digest(events_digest(con, name, "ws"))
        user, join = ("us.uid", " JOIN __users us ON c.u = us.raw") if report.pseudonymized else ("c.u", "")
        ts = "c.ts" if S.TIMESTAMP in rules.mapping else f"c.ts + to_seconds({first})"  # file order, continued
        con.execute(
            f"INSERT INTO ws.events SELECT ?, ? + c.row, {user}, c.i, {ts}, c.b, c.v, c.t "
            f"FROM {CHECKED} c{join} WHERE c.reason IS NULL",
            [name, first],
        )
        fresh = f"{S.ITEM_ID} NOT IN (SELECT {S.ITEM_ID} FROM ws.items WHERE {S.DATASET} = ?)"
        out["items_added"] = count(con, f"SELECT count(*) FROM __items WHERE {fresh}", [name])
        con.execute(f"INSERT INTO ws.items SELECT ?, * FROM __items WHERE {fresh}", [name, name])
        set_rows_end(con, name, first + count(con, f"SELECT max(row) FROM {CHECKED}") + 1, "ws")
        record_append(con, name, first, before, "ws")
        report.version = next_version(con, name, "ws")
        out.update(events_added=report.rows_accepted, first_row=first, version=report.version, **_counts(con, name))
        _update_dataset(con, name, report, out)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT ws")
    return out


def _counts(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    row = con.execute(
        f"SELECT count(*), count(DISTINCT {S.USER_ID}), count(DISTINCT {S.ITEM_ID}) FROM ws.events "
        f"WHERE {S.DATASET} = ?",
        [name],
    ).fetchone()
    events, users, items = (int(v) for v in (row or (0, 0, 0)))
    return {"events_after": events, "users_after": users, "items_after": items}


def _update_dataset(con: duckdb.DuckDBPyConnection, name: str, report: IngestReport, out: dict[str, Any]) -> None:
    """The dataset row after the append: counts, sources, and an ``appends`` entry in its report."""
    row = con.execute("SELECT sources, report FROM ws.datasets WHERE name = ?", [name]).fetchone()
    sources, stored_report = (json.loads(row[0]), json.loads(row[1])) if row else ([], {})
    entry = {
        "sources": report.sources,
        "version": report.version,
        "rows_read": report.rows_read,
        "rows_accepted": report.rows_accepted,
        "rows_rejected": report.rows_rejected,
        "rejected_by_reason": report.rejected_by_reason,
        "items_added": out["items_added"],
        "time_range": report.time_range,
    }
    stored_report["appends"] = [*stored_report.get("appends", []), entry]
    con.execute(
        "UPDATE ws.datasets SET sources = ?, n_events = ?, n_users = ?, n_items = ?, report = ? WHERE name = ?",
        [
            json.dumps([*sources, *report.sources]),
            out["events_after"],
            out["users_after"],
            out["items_after"],
            json.dumps(stored_report, default=str),
            name,
        ],
    )
