"""Dataset versions and event digests: a dataset stays what its runs were trained on.

Every ingest under a name makes the next *version* of that dataset (1, 2, ...; table
``dataset_versions``). A run records, when it starts training, a *stamp* of its dataset:
the version, the number of events and a digest of the event rows (under ``config["data"]``
of its row and of ``run.json``). Two rules follow:

- An ingest refuses to replace a dataset with different events while runs depend on it
  (every run of it except failed ones, running ones included): :class:`ReplaceGuard`,
  inside the ingest's transaction. Identical events (the bundled sample re-created, the
  same log ingested again) pass, since no run can tell.
- A run refuses to load (evaluate, recommend, explain, resume) once its dataset's events
  differ from its stamp: :func:`check_stamp`. Runs saved before stamps existed have none
  and are not checked.
- Forgetting a user and appending a log (``ingest --append-to``) make the next version too,
  and keep every run loadable: a run reads the rows numbered below its stamp's bound, less
  the users forgotten since (:mod:`core.store.lineage`).

The digest is computed in DuckDB over the event rows, as a count and two order-free sums
(128-bit integers, so deterministic in any order and thread count): ``digest``, of the
first 64 bits of SHA-256 over each row's (row, user, item, timestamp in microseconds,
behavior, value as ``%.17g``, text), the same in every DuckDB release; and ``fast``, of
DuckDB's own ``hash`` of the same columns, about ten times quicker but only stable within
one DuckDB release (``engine``). A check under the release that made the stamp compares
``fast``; after a DuckDB upgrade it compares ``digest``. ML-1M (1,000,209 events, two busy
cores): ``fast`` 0.14-0.23 s, both 1.3-1.6 s, reading the events 1.4-1.9 s (see README).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb

from core import schema as S
from core.errors import ArtifactError, DatasetChangedError, DatasetInUseError
from core.store.lineage import BOUND_KEY, resolve, rows_end
from core.store.lineage import forget_count as lineage_forgets
from core.store.workspace import Workspace

DATA_KEY = "data"  # the key of a run's config that holds its dataset stamp
DIGEST_KIND = "sha256-rowsum-1"  # what ``digest`` is; a new kind must keep the old one checkable
ENGINE = f"duckdb-{duckdb.__version__}"  # DuckDB's hash(), behind ``fast``, is stable within one release only
FAILED = "failed"  # runs that depend on nothing (core.runs.records.FAILED; store cannot import runs)
_VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS {db}dataset_versions (name VARCHAR PRIMARY KEY, version BIGINT NOT NULL)"
_COLUMNS = f"{S.ROW}, {S.USER_ID}, {S.ITEM_ID}, {S.TIMESTAMP}, {S.BEHAVIOR}, {S.VALUE}, {S.TEXT}"
_ROW_TEXT = (
    f"concat_ws(chr(31), {S.ROW}::VARCHAR, {S.USER_ID}, {S.ITEM_ID}, epoch_us({S.TIMESTAMP})::VARCHAR, "
    f"{S.BEHAVIOR}, coalesce(printf('%.17g', {S.VALUE}), chr(0)), coalesce({S.TEXT}, chr(0)))"
)
_STABLE_SUM = f"sum(('0x' || left(sha256({_ROW_TEXT}), 16))::UBIGINT::HUGEINT)"
_MAX_NAMED_RUNS = 5


@dataclass(frozen=True)
class Digest:
    """What a dataset's event rows are: their count and order-free checksums (hex)."""

    events: int
    fast: str  # DuckDB's hash(): valid under ENGINE only
    stable: str | None  # SHA-256 based, valid under any DuckDB release (None: not computed)

    def matches(self, stamp: dict[str, Any]) -> bool:
        """Whether these are the rows ``stamp`` recorded (``fast`` under the same DuckDB release)."""
        if int(stamp["events"]) != self.events:
            return False
        if stamp.get("engine") == ENGINE and stamp.get("fast"):
            return bool(stamp["fast"] == self.fast)
        return self.stable is not None and stamp.get("digest") == self.stable


def events_digest(
    con: duckdb.DuckDBPyConnection, name: str, db: str = "", stable: bool = True, below: int | None = None
) -> Digest:
    """The digest of dataset ``name``'s event rows (``db``: an attached database's name, or the default one;
    ``below``: only the rows numbered below it); ``stable=False`` skips the slower release-independent sum."""
    sums = f"sum(hash({_COLUMNS})::HUGEINT)" + (f", {_STABLE_SUM}" if stable else "")
    where, params = (f" AND {S.ROW} < ?", [name, int(below)]) if below is not None else ("", [name])
    query = f"SELECT count(*), {sums} FROM {_prefix(db)}events WHERE {S.DATASET} = ?{where}"
    row = con.execute(query, params).fetchone()
    values = [0 if v is None else int(v) for v in (row or (0, 0, 0))]
    return Digest(values[0], f"{values[1]:032x}", f"{values[2]:032x}" if stable else None)


def data_stamp(ws: Workspace, name: str) -> dict[str, Any]:
    """The stamp a run records of dataset ``name`` as it is now: version, events, digest, digest kind.

    Hold ``ws.lock()`` around this and the read of the rows the run trains on, so that both see the same data."""
    ws.dataset(name)
    with ws.connect() as con:
        digest = events_digest(con, name)
        version = _version(con, name, "") or 1  # a dataset ingested before versions is version 1
        con.execute("INSERT OR IGNORE INTO dataset_versions VALUES (?, ?)", [name, version])
        bound = rows_end(con, name)  # rows a later append adds are numbered from here
    return {
        "version": version,
        BOUND_KEY: bound,
        "events": digest.events,
        "digest": digest.stable,
        "kind": DIGEST_KIND,
        "fast": digest.fast,
        "engine": ENGINE,
    }


def check_stamp(ws: Workspace, name: str, stamp: dict[str, Any] | None, run_id: str) -> int | None:
    """Refuse (DatasetChangedError) when dataset ``name`` no longer holds the events run ``run_id`` stamped; else
    the bound of the rows the run reads (those numbered below it: rows appended later are not the run's), None
    for all of them.

    ``stamp`` None (a run saved before stamps existed): nothing to check against, so nothing is checked."""
    if not stamp:
        return None
    if stamp.get("kind") != DIGEST_KIND:
        raise ArtifactError(
            f"run {run_id} records a dataset digest of kind {stamp.get('kind')!r} that this version cannot "
            f"compute (expected {DIGEST_KIND!r}): use the BehaviorLens release that trained it"
        )
    ws.dataset(name)
    with ws.connect() as con:
        view = resolve(con, name, stamp)
        now = events_digest(con, name, stable=stamp.get("engine") != ENGINE, below=view.bound)
        version = _version(con, name, "")
    if now.matches(view.seen):
        return view.bound  # the same rows, less forgotten users (the run is marked: core.runs.forget)
    change = _change(int(stamp["events"]), now.events)
    how = f"version {version} now" if version != stamp.get("version") else "same version: changed in place"
    raise DatasetChangedError(
        f"run {run_id} was trained on version {stamp.get('version')} of dataset {name!r} ({int(stamp['events']):,} "
        f"events), but the dataset's events have changed since ({change}; {how}): evaluating, recommending or "
        f"explaining the run would use data it was not trained and tested on, so it is refused. Train a new run "
        f"on the current data, or ingest the original log under a new name and train on that"
    )


def stamp_of_digest(digest: Digest, below: int | None = None) -> dict[str, Any]:
    """What a stamp records of ``digest`` (events, both checksums, the DuckDB release of ``fast``; the row bound
    of a prefix's digest)."""
    bound = {} if below is None else {BOUND_KEY: int(below)}
    return {"events": digest.events, "fast": digest.fast, "digest": digest.stable, "engine": ENGINE, **bound}


def next_version(con: duckdb.DuckDBPyConnection, name: str, db: str = "") -> int:
    """Make and return the next version of dataset ``name`` (a forget or an append; inside its transaction)."""
    version = (_version(con, name, db) or 1) + 1
    con.execute(f"INSERT OR REPLACE INTO {_prefix(db)}dataset_versions VALUES (?, ?)", [name, version])
    return version


def forget_count(ws: Workspace) -> int:
    """How many forgets the workspace has recorded: a cache of rows read before one must not be served after."""
    with ws.connect() as con:
        return lineage_forgets(con)


@dataclass
class ReplaceGuard:
    """What an ingest replacing dataset ``name`` must respect: the runs that depend on its current rows.

    Made by :func:`before_replace` before the old rows are deleted, checked by :meth:`check` after the new
    ones are written, in the same transaction (so a refusal rolls the new rows back)."""

    name: str
    db: str
    version: int  # the version the ingest makes
    runs: list[tuple[str, str, dict[str, Any]]]  # (run ID, status, the rows it saw) of every dependent run

    def check(self, con: duckdb.DuckDBPyConnection) -> None:
        """Refuse (DatasetInUseError) when a dependent run would now see different events; else record the version."""
        if self.runs:
            stable = any(seen.get("engine") != ENGINE for _, _, seen in self.runs)
            after = events_digest(con, self.name, self.db, stable)
            moved = [(rid, status) for rid, status, seen in self.runs if not after.matches(seen)]
            if moved:
                raise DatasetInUseError(_in_use_message(self.name, self.version, moved))
        table = f"{_prefix(self.db)}dataset_versions"
        con.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", [self.name, self.version])


def before_replace(con: duckdb.DuckDBPyConnection, name: str, db: str = "") -> ReplaceGuard:
    """The guard of an ingest about to (re)write dataset ``name`` (call inside its transaction).

    The dependent runs are every run of ``name`` but failed ones (those are checked when resumed or loaded)."""
    current = _version(con, name, db)
    if current is None:  # never versioned: a dataset ingested before versions existed is version 1
        found = con.execute(f"SELECT count(*) FROM {_prefix(db)}datasets WHERE name = ?", [name]).fetchone()
        current = 1 if found is not None and found[0] else 0
    rows = con.execute(
        f"SELECT run_id, status, config FROM {_prefix(db)}runs WHERE {S.DATASET} = ? AND status <> ? "
        "ORDER BY created_at",
        [name, FAILED],
    ).fetchall()
    stamps = [(str(rid), str(status), _stamp_of(config)) for rid, status, config in rows]
    # a run trained before users were forgotten depends on the rows as they are now, without those users
    stamps = [(rid, status, stamp and resolve(con, name, stamp, db).seen) for rid, status, stamp in stamps]
    now: dict[str, Any] = {}
    if any(stamp is None for _, _, stamp in stamps):  # a run saved before stamps saw the rows there now
        digest = events_digest(con, name, db, stable=False)
        now = {"events": digest.events, "fast": digest.fast, "engine": ENGINE, "digest": None}
    runs = [(rid, status, stamp or now) for rid, status, stamp in stamps]
    return ReplaceGuard(name, db, current + 1, runs)


def _in_use_message(name: str, version: int, runs: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{rid} ({status})" for rid, status in runs[:_MAX_NAMED_RUNS])
    more = f" and {len(runs) - _MAX_NAMED_RUNS} more" if len(runs) > _MAX_NAMED_RUNS else ""
    return (
        f"dataset {name!r} has {len(runs)} run(s) trained on it: {shown}{more}. Re-ingesting it with different "
        f"events would change what they evaluate, recommend and explain on, so nothing was changed. Ingest "
        f"under a new name (such as {name[:60]}-v{version}), or delete those runs first "
        "(`behaviorlens runs delete RUN`)"
    )


def _change(before: int, after: int) -> str:
    if after == before:
        return f"still {after:,} events, but not the same ones"
    if after < before:
        return f"{after:,} events now, {before - after:,} fewer"
    return f"{after:,} events now, {after - before:,} more"


def dataset_versions(ws: Workspace) -> dict[str, int]:
    """The version of every stored dataset (one ingested before versions were counted is version 1)."""
    with ws.connect() as con:
        con.execute(_VERSIONS_DDL.format(db=""))
        rows = con.execute(
            "SELECT d.name, coalesce(v.version, 1) FROM datasets d LEFT JOIN dataset_versions v ON v.name = d.name"
        ).fetchall()
    return {str(name): int(version) for name, version in rows}


def _version(con: duckdb.DuckDBPyConnection, name: str, db: str) -> int | None:
    con.execute(_VERSIONS_DDL.format(db=_prefix(db)))
    row = con.execute(f"SELECT version FROM {_prefix(db)}dataset_versions WHERE name = ?", [name]).fetchone()
    return None if row is None else int(row[0])


def _stamp_of(config: Any) -> dict[str, Any] | None:
    stamp = json.loads(config).get(DATA_KEY) if isinstance(config, str) and config else None
    return stamp if isinstance(stamp, dict) and stamp.get("kind") == DIGEST_KIND else None


def _prefix(db: str) -> str:
    return f"{db}." if db else ""
