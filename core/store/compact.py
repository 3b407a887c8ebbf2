"""Rewrite the workspace database so that deleted rows leave no bytes on disk.

DuckDB marks the blocks of deleted rows free and reuses them later: until then their bytes stay in
the file. :func:`compact` copies the live database into a new file (``COPY FROM DATABASE``) and
renames it over the old one, under the workspace lock, so no other process has it open.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.store.permissions import tighten_tree
from core.store.workspace import DB_FILE, OWN_ENTRIES, Workspace

COMPACT_SUFFIX = ".compact"


def compact(ws: Workspace) -> None:
    """Replace the database file by a copy holding its live rows only."""
    fresh = ws.root / (DB_FILE + COMPACT_SUFFIX)
    with ws.lock():
        fresh.unlink(missing_ok=True)
        try:
            _copy_into(ws, fresh)
            os.replace(fresh, ws.db_path)
        except BaseException:
            fresh.unlink(missing_ok=True)  # the database stays as it was; no half copy is left beside it
            raise
        (ws.root / (DB_FILE + ".wal")).unlink(missing_ok=True)
        tighten_tree(ws.root, OWN_ENTRIES)


def _copy_into(ws: Workspace, fresh: Path) -> None:
    """Copy the workspace database's live rows into a new database file ``fresh``."""
    with ws.connect() as con:
        con.execute("CHECKPOINT")
        row = con.execute("SELECT current_database()").fetchone()
        source = str(row[0]) if row else ws.db_path.stem
        con.execute(f"ATTACH '{_quoted(str(fresh))}' AS compacted")
        try:
            con.execute(f'COPY FROM DATABASE "{_ident(source)}" TO compacted')
            con.execute("CHECKPOINT compacted")
        finally:
            con.execute("DETACH compacted")


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _ident(text: str) -> str:
    return text.replace('"', '""')
