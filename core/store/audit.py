"""The workspace's audit log: who did what, and when, to its data and runs (append-only).

Every ingest, training run (started or resumed), export and forget appends one row to table
``audit_log``: the UTC time, the actor, the action, its target (a dataset or run) and a short detail.
The actor is the signed-in user's e-mail when the dashboard has sign-in, else ``BEHAVIORLENS_ACTOR``
when set, else the operating-system user and host of the process (``alice@laptop``, ``dashboard`` for
the pages of an unshared dashboard). A detail never holds a user ID: a forget records how many events
it removed, not whose.

Rows are never updated or deleted by the product; ``behaviorlens audit`` and the Data page show them.
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

import pandas as pd

from core.store.workspace import Workspace

ACTOR_ENV = "BEHAVIORLENS_ACTOR"
ACTIONS = ("ingest", "append", "train", "resume", "export", "forget", "delete run")
MAX_DETAIL = 500
_DDL = (
    "CREATE TABLE IF NOT EXISTS audit_log (logged_at TIMESTAMP NOT NULL, actor VARCHAR NOT NULL, "
    "action VARCHAR NOT NULL, target VARCHAR NOT NULL, detail VARCHAR NOT NULL)"
)


def process_actor() -> str:
    """Who this process acts for: ``BEHAVIORLENS_ACTOR``, else ``user@host``."""
    named = os.environ.get(ACTOR_ENV, "").strip()
    if named:
        return named[:200]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record(ws: Workspace, action: str, target: str, detail: str = "", actor: str | None = None) -> None:
    """Append one row: ``action`` (one of :data:`ACTIONS`) on ``target`` by ``actor`` (default: this process's)."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r}: expected one of {', '.join(ACTIONS)}")
    with ws.connect() as con:
        con.execute(_DDL)
        con.execute(
            "INSERT INTO audit_log VALUES (now()::TIMESTAMP, ?, ?, ?, ?)",
            [actor or process_actor(), action, str(target)[:200], str(detail)[:MAX_DETAIL]],
        )


def entries(ws: Workspace, limit: int | None = 200) -> pd.DataFrame:
    """The newest ``limit`` rows (all when None), newest first: at, actor, action, target, detail."""
    with ws.connect() as con:
        con.execute(_DDL)
        tail = "" if limit is None else f" LIMIT {int(limit)}"
        return con.execute(
            f'SELECT logged_at AS "at", actor, action, target, detail FROM audit_log ORDER BY logged_at DESC, '
            f"rowid DESC{tail}"
        ).df()


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for ``--json``: the time as ISO 8601 UTC."""
    return [{**row, "at": pd.Timestamp(row["at"]).isoformat() + "Z"} for row in frame.to_dict("records")]
