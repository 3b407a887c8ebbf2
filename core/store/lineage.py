"""What happened to a dataset's rows after a run stamped them: forgotten users and appended logs.

A run's stamp (:func:`core.store.versions.data_stamp`) records the rows it was trained on. Two later
changes keep it loadable, each recorded here, never with a user in it:

- **a forget** (``dataset_forgets``) deletes one user's rows. It records the digests of the rows before
  and after, once for the whole dataset and once for every *prefix* an append has made (the rows below
  its first row), so a run that saw only a prefix follows the change too;
- **an append** (``dataset_appends``) adds a new log's rows, numbered from the dataset's *row end*
  (``dataset_rows``: one past the highest row number ever given, never lowered by a forget), so every
  row a run saw stays below the bound its stamp records (``rows_below``). An append records the digest
  of the rows before it and its first row, so a stamp made before bounds existed finds its bound.

:func:`resolve` replays both, in order, for one stamp: the rows it sees now are those below its bound,
and their digest must equal what the stamp's rows became after the forgets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb

from core import schema as S

BOUND_KEY = "rows_below"  # a stamp's row bound: the rows it saw are those numbered below it
_FORGETS_DDL = (
    "CREATE TABLE IF NOT EXISTS {db}dataset_forgets (name VARCHAR NOT NULL, forgotten_at TIMESTAMP NOT NULL, "
    "rows_before VARCHAR NOT NULL, rows_after VARCHAR NOT NULL)"  # stamps (counts and digests), never a user
)
_APPENDS_DDL = (
    "CREATE TABLE IF NOT EXISTS {db}dataset_appends (name VARCHAR NOT NULL, appended_at TIMESTAMP NOT NULL, "
    "first_row BIGINT NOT NULL, rows_before VARCHAR NOT NULL)"
)
_ROWS_DDL = "CREATE TABLE IF NOT EXISTS {db}dataset_rows (name VARCHAR PRIMARY KEY, rows_end BIGINT NOT NULL)"


@dataclass(frozen=True)
class View:
    """The rows a stamp sees now: those numbered below ``bound`` (None: all), whose digest should be ``seen``."""

    bound: int | None
    seen: dict[str, Any]


def rows_end(con: duckdb.DuckDBPyConnection, name: str, db: str = "") -> int:
    """One past the highest row number dataset ``name`` has given (recorded on first use, so a forget of the
    last rows never lowers it)."""
    con.execute(_ROWS_DDL.format(db=_prefix(db)))
    found = con.execute(f"SELECT rows_end FROM {_prefix(db)}dataset_rows WHERE name = ?", [name]).fetchone()
    if found is not None:
        return int(found[0])
    top = con.execute(
        f"SELECT coalesce(max({S.ROW}) + 1, 0) FROM {_prefix(db)}events WHERE {S.DATASET} = ?", [name]
    ).fetchone()
    end = int(top[0]) if top else 0
    set_rows_end(con, name, end, db)
    return end


def set_rows_end(con: duckdb.DuckDBPyConnection, name: str, end: int, db: str = "") -> None:
    """Record ``end`` as dataset ``name``'s row end (an ingest, which renumbers its rows, and an append)."""
    con.execute(_ROWS_DDL.format(db=_prefix(db)))
    con.execute(f"INSERT OR REPLACE INTO {_prefix(db)}dataset_rows VALUES (?, ?)", [name, int(end)])


def record_append(con: duckdb.DuckDBPyConnection, name: str, first_row: int, before: dict[str, Any], db: str) -> None:
    """Record that rows numbered from ``first_row`` were appended to ``name``, whose rows were ``before``."""
    con.execute(_APPENDS_DDL.format(db=_prefix(db)))
    con.execute(
        f"INSERT INTO {_prefix(db)}dataset_appends VALUES (?, now()::TIMESTAMP, ?, ?)",
        [name, int(first_row), json.dumps(before)],
    )


def prefixes(con: duckdb.DuckDBPyConnection, name: str) -> list[int]:
    """The row bounds appends to dataset ``name`` have made since it was last ingested, ascending."""
    con.execute(_APPENDS_DDL.format(db=""))
    rows = con.execute(
        "SELECT DISTINCT a.first_row FROM dataset_appends a JOIN datasets d ON d.name = a.name "
        "WHERE a.name = ? AND a.appended_at >= d.created_at ORDER BY 1",
        [name],
    ).fetchall()
    return [int(r[0]) for r in rows]


def record_forget(
    con: duckdb.DuckDBPyConnection, name: str, changes: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    """Record that users were forgotten from dataset ``name``: ``changes`` holds (before, after) stamps of the
    whole dataset and of each prefix (those carry their bound). Call inside the forget's transaction."""
    con.execute(_FORGETS_DDL.format(db=""))
    for before, after in changes:
        con.execute(
            "INSERT INTO dataset_forgets VALUES (?, now()::TIMESTAMP, ?, ?)",
            [name, json.dumps(before), json.dumps(after)],
        )


def forget_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many forget records the workspace holds: a cache of rows read before one must not be served after."""
    con.execute(_FORGETS_DDL.format(db=""))
    row = con.execute("SELECT count(*) FROM dataset_forgets").fetchone()
    return int(row[0]) if row else 0


def resolve(con: duckdb.DuckDBPyConnection, name: str, stamp: dict[str, Any], db: str = "") -> View:
    """The rows ``stamp`` sees now, after every later forget and append of dataset ``name``."""
    pre = _prefix(db)
    con.execute(_FORGETS_DDL.format(db=pre))
    con.execute(_APPENDS_DDL.format(db=pre))
    changes = con.execute(
        f"SELECT forgotten_at, 0, rows_before, rows_after FROM {pre}dataset_forgets WHERE name = ? "
        f"UNION ALL SELECT appended_at, 1, rows_before, first_row::VARCHAR FROM {pre}dataset_appends WHERE name = ? "
        "ORDER BY 1, 2",
        [name, name],
    ).fetchall()
    bound = stamp.get(BOUND_KEY)
    seen = stamp
    for _at, kind, before_text, what in changes:
        before = json.loads(before_text)
        if not same_rows(before, seen):
            continue
        if kind == 0:  # a forget: the rows lose the user; a prefix's record also tells an unbounded stamp its bound
            seen = json.loads(what)
            bound = before.get(BOUND_KEY) if bound is None else bound
        elif bound is None:  # an append to the rows this stamp saw: they are those below its first row
            bound = int(what)
    return View(None if bound is None else int(bound), seen)


def same_rows(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two stamps record the same rows: ``fast`` when both were made under one DuckDB release, else the
    stable digest."""
    if int(a["events"]) != int(b["events"]):
        return False
    if a.get("engine") == b.get("engine") and a.get("fast") and b.get("fast"):
        return bool(a["fast"] == b["fast"])
    return a.get("digest") is not None and a.get("digest") == b.get("digest")


def _prefix(db: str) -> str:
    return f"{db}." if db else ""
