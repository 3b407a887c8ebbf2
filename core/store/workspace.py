"""The workspace: one folder holding a DuckDB database and one directory per run.

Layout::

    <root>/behaviorlens.duckdb   datasets, events, items, runs
    <root>/.lock                 inter-process lock file (flock) and who holds it
    <root>/.key                  HMAC key for user pseudonyms and run seals (never shown)
    <root>/runs/<run_id>/        model.safetensors, config.json, metrics.json, ...

The folder and every folder in it are 0700, every file 0600 (:mod:`core.store.permissions`);
an older, wider workspace is tightened when it is opened.

Every database access goes through :meth:`Workspace.connect`, which holds an
exclusive ``flock`` for the life of a short-lived connection. DuckDB allows a
single writing process per file; the lock serializes processes (the dashboard, the
CLI, a second ingest) instead of letting the second one fail or corrupt anything.
A process that waits for it longer than a timeout fails with the holder named
(:mod:`core.store.lock`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core import schema as S
from core.errors import DataError, NotFoundError, WorkspaceError
from core.store.lock import LOCK_FILE, WorkspaceLock
from core.store.permissions import private_dir, tighten_tree
from core.store.pseudonyms import KEY_FILE, load_or_create_key, pseudonymize

WORKSPACE_ENV = "BEHAVIORLENS_WORKSPACE"
DEFAULT_WORKSPACE = "workspace"
DB_FILE = "behaviorlens.duckdb"
# what the workspace (and its modules) create in its folder: made private when it is opened
OWN_ENTRIES = (DB_FILE, DB_FILE + ".wal", LOCK_FILE, KEY_FILE, "runs", "cache", "uploads")  # core.store.uploads
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_DDL = f"""
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    sources VARCHAR NOT NULL,          -- JSON list of source file names
    mapping VARCHAR NOT NULL,          -- JSON object field -> source column
    pseudonymized BOOLEAN NOT NULL,
    n_events BIGINT NOT NULL,
    n_users BIGINT NOT NULL,
    n_items BIGINT NOT NULL,
    report VARCHAR NOT NULL            -- JSON of the IngestReport (no raw user IDs)
);
CREATE TABLE IF NOT EXISTS events (
    {S.DATASET} VARCHAR NOT NULL,
    {S.ROW} BIGINT NOT NULL,
    {S.USER_ID} VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- high-cardinality IDs: compressing
    {S.ITEM_ID} VARCHAR USING COMPRESSION uncompressed NOT NULL,   -- them doubled the ingest write time
    {S.TIMESTAMP} TIMESTAMP NOT NULL,
    {S.BEHAVIOR} VARCHAR NOT NULL,
    {S.VALUE} DOUBLE,
    {S.TEXT} VARCHAR
);
CREATE TABLE IF NOT EXISTS items (
    {S.DATASET} VARCHAR NOT NULL,
    {S.ITEM_ID} VARCHAR NOT NULL,
    {S.ITEM_TITLE} VARCHAR,
    {S.ITEM_CATEGORY} VARCHAR,
    {S.ITEM_TEXT} VARCHAR,
    {S.ITEM_ATTRS} VARCHAR
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    {S.DATASET} VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    config VARCHAR NOT NULL,
    metrics VARCHAR
);
CREATE TABLE IF NOT EXISTS run_marks (    -- e.g. trained on data since deleted (core.runs.forget)
    run_id VARCHAR PRIMARY KEY,
    mark VARCHAR NOT NULL,
    marked_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS run_seals (    -- runs this workspace vouches for (core.store.seals)
    run_id VARCHAR PRIMARY KEY,
    legacy_sha256 VARCHAR                 -- NULL: sealed with the key; else the unkeyed checksum first seen
);
"""


@dataclass(frozen=True)
class DatasetInfo:
    """One stored dataset's metadata."""

    name: str
    created_at: pd.Timestamp
    sources: list[str]
    mapping: dict[str, str]
    pseudonymized: bool
    n_events: int
    n_users: int
    n_items: int
    report: dict[str, Any]


def validate_name(name: str, what: str = "dataset") -> str:
    """Return ``name`` if it is a safe identifier, else raise DataError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DataError(
            f"invalid {what} name {name!r}: expected 1-64 characters of letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return name


class Workspace:
    """A workspace folder: the DuckDB file, the pseudonym key and the run folders."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        chosen = root if root is not None else os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
        self.root = Path(chosen).expanduser().resolve()
        self.db_path = self.root / DB_FILE
        self.runs_dir = self.root / "runs"
        self.cache_dir = self.root / "cache"
        self._key: bytes | None = None
        self._lock = WorkspaceLock(self.root)
        self._prepare()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- setup -----------------------------------------------------------------
    def _prepare(self) -> None:
        """Create the folders private (0700), tighten an older workspace, create the tables (the file 0600)."""
        try:
            private_dir(self.runs_dir)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace folder {self.root}: {exc.strerror}") from exc
        with self.connect() as con:
            con.execute(_DDL)
        tighten_tree(self.root, OWN_ENTRIES)  # the database file DuckDB made with the umask's mode, older folders

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace's exclusive inter-process lock (re-entrant per thread); WorkspaceError naming the
        holder when it stays taken past the timeout (:func:`core.store.lock.lock_timeout`)."""
        with self._lock.hold():
            yield

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection to the workspace database, under the lock."""
        with self.lock():
            try:
                con = duckdb.connect(str(self.db_path))
            except duckdb.Error as exc:
                raise WorkspaceError(f"cannot open workspace database {self.db_path}: {exc}") from exc
            try:
                con.execute("SET TimeZone='UTC'")
                # no progress bar: DuckDB prints it on stdout for a long query, inside a command's JSON output
                con.execute("SET enable_progress_bar = false")
                yield con
            finally:
                con.close()

    # -- pseudonyms --------------------------------------------------------------
    def secret_key(self) -> bytes:
        """The workspace's HMAC key (see :mod:`core.store.pseudonyms`), created once on first use."""
        if self._key is None:
            self._key = load_or_create_key(self.root)
        return self._key

    def pseudonymize(self, raw_user_ids: list[str]) -> list[str]:
        """Keyed pseudonyms (HMAC-SHA256, first 64 bits as hex) of raw user IDs."""
        return pseudonymize(self.secret_key(), raw_user_ids)

    def resolve_user(self, dataset: str, user_id: str) -> str:
        """Map an original user ID to the stored one (pseudonym when the dataset has them)."""
        info = self.dataset(dataset)
        stored = self.pseudonymize([user_id])[0] if info.pseudonymized else user_id
        with self.connect() as con:
            found = con.execute(
                f"SELECT 1 FROM events WHERE {S.DATASET} = ? AND {S.USER_ID} = ? LIMIT 1",
                [dataset, stored],
            ).fetchone()
        if found is None:
            raise NotFoundError(f"user {user_id!r} has no events in dataset {dataset!r}")
        return stored

    # -- datasets ----------------------------------------------------------------
    def list_datasets(self) -> pd.DataFrame:
        """Stored datasets, newest first (no report bodies)."""
        with self.connect() as con:
            return con.execute(
                "SELECT name, created_at, sources, pseudonymized, n_events, n_users, n_items "
                "FROM datasets ORDER BY created_at DESC, name"
            ).df()

    def dataset_names(self) -> list[str]:
        return list(self.list_datasets()["name"])

    def dataset(self, name: str) -> DatasetInfo:
        """Metadata of one dataset; NotFoundError when absent."""
        with self.connect() as con:
            row = con.execute(
                "SELECT name, created_at, sources, mapping, pseudonymized, n_events, n_users, "
                "n_items, report FROM datasets WHERE name = ?",
                [name],
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no dataset named {name!r} in workspace {self.root}")
        return DatasetInfo(
            name=row[0],
            created_at=pd.Timestamp(row[1]),
            sources=json.loads(row[2]),
            mapping=json.loads(row[3]),
            pseudonymized=bool(row[4]),
            n_events=int(row[5]),
            n_users=int(row[6]),
            n_items=int(row[7]),
            report=json.loads(row[8]),
        )

    def events(
        self, name: str, columns: tuple[str, ...] = S.EVENT_FIELDS, below_row: int | None = None
    ) -> pd.DataFrame:
        """A dataset's events, ordered by (user, timestamp, row); ``below_row``: only the rows numbered below it
        (what a run trained before an append reads: :func:`core.store.versions.check_stamp`)."""
        self.dataset(name)
        cols = ", ".join(_checked_columns(columns, S.EVENT_FIELDS + (S.ROW,)))
        where, params = (f" AND {S.ROW} < ?", [name, int(below_row)]) if below_row is not None else ("", [name])
        with self.connect() as con:
            return con.execute(
                f"SELECT {cols} FROM events WHERE {S.DATASET} = ?{where} ORDER BY {S.USER_ID}, {S.TIMESTAMP}, {S.ROW}",
                params,
            ).df()

    def items(self, name: str) -> pd.DataFrame:
        """A dataset's item catalogue (every item seen in events, plus catalogue-only items)."""
        self.dataset(name)
        with self.connect() as con:
            return con.execute(
                f"SELECT {S.ITEM_ID}, {S.ITEM_TITLE}, {S.ITEM_CATEGORY}, {S.ITEM_TEXT}, "
                f"{S.ITEM_ATTRS} FROM items WHERE {S.DATASET} = ? ORDER BY {S.ITEM_ID}",
                [name],
            ).df()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a read query against the workspace and return a DataFrame."""
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def delete_dataset(self, name: str) -> None:
        """Remove a dataset and its events and items, in one transaction."""
        self.dataset(name)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            for table in ("events", "items"):
                con.execute(f"DELETE FROM {table} WHERE {S.DATASET} = ?", [name])
            con.execute("DELETE FROM datasets WHERE name = ?", [name])
            con.execute("COMMIT")
            con.execute("CHECKPOINT")

    def run_dir(self, run_id: str) -> Path:
        """The folder of one run (not created)."""
        return self.runs_dir / validate_name(run_id, "run")


def _checked_columns(columns: tuple[str, ...], allowed: tuple[str, ...]) -> list[str]:
    bad = [c for c in columns if c not in allowed]
    if bad:
        raise DataError(f"unknown event column(s) {bad}: expected some of {list(allowed)}")
    return list(columns)
