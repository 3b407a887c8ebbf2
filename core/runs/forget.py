"""Forgetting a user: their events, and every stored thing that names them, leave the workspace.

:func:`forget_user` takes an original or a pseudonymous user ID and, under the workspace lock:

1. deletes the user's events from every dataset that has them (or from the one named), one
   transaction per dataset, and keeps the accounting whole: the dataset's counts are updated, its
   ingest report gains ``forgotten`` (users and events removed since the ingest), and every report
   example that names the user (a rejected or duplicate row) is dropped;
2. makes the next version of each such dataset and records the change (the digests of the rows
   before and after, never the user: :func:`core.store.lineage.record_forget`), so a run trained
   before it still loads, on the rows without the user; every run of the dataset is marked
   :data:`DATA_DELETED` (its weights learned from the user's events), and the pages show the mark
   and offer a retrain;
3. removes what was derived from the user's rows: the fusion caches of the dataset's runs (scores
   and IDs per user) and cached embeddings of the user's event texts;
4. rewrites the database file (:func:`core.store.compact.compact`): DuckDB keeps deleted rows'
   bytes in freed blocks until it reuses them.

A second call finds nothing and changes nothing. Nothing written keeps the ID. A log ingested again
under the same name brings the user back: remove them from the source as well.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import duckdb

from core import schema as S
from core.errors import DataError
from core.model.embedding_cache import forget_texts
from core.store import audit
from core.store.compact import compact
from core.store.lineage import prefixes, record_forget
from core.store.run_folder import FUSION_FOLDER
from core.store.versions import events_digest, next_version, stamp_of_digest
from core.store.workspace import Workspace

DATA_DELETED = "trained on data since deleted"
MAX_ID_LENGTH = 1000


@dataclass
class ForgetReport:
    """What :func:`forget_user` removed (nothing: empty and zero)."""

    events: dict[str, int] = field(default_factory=dict)  # dataset -> events removed
    report_examples: int = 0  # ingest-report examples that named the user
    runs_marked: list[str] = field(default_factory=list)  # runs trained on the removed events
    fusion_caches: list[str] = field(default_factory=list)  # runs whose fusion caches were removed
    embeddings: int = 0  # cached embeddings of the user's event texts
    compacted: bool = False  # the database file was rewritten without freed blocks

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "events_total": sum(self.events.values()),
            "report_examples": self.report_examples,
            "runs_marked": list(self.runs_marked),
            "fusion_caches": list(self.fusion_caches),
            "embeddings": self.embeddings,
            "compacted": self.compacted,
        }


def forget_user(ws: Workspace, user_id: str, dataset: str | None = None, actor: str | None = None) -> ForgetReport:
    """Remove user ``user_id`` (original or pseudonymous) from ``dataset``, or from every dataset (None).

    Raises:
        DataError: an empty or over-long ID.
        NotFoundError: ``dataset`` is named and does not exist.
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise DataError("user: expected a non-empty user ID (the original ID or its pseudonym, such as u_3f2a...)")
    if len(user_id) > MAX_ID_LENGTH:
        raise DataError(f"user: an ID of {len(user_id):,} characters; expected at most {MAX_ID_LENGTH:,}")
    out = ForgetReport()
    with ws.lock():
        names = [ws.dataset(dataset).name] if dataset is not None else ws.dataset_names()
        ids = sorted({user_id, ws.pseudonymize([user_id])[0]})  # as given (raw or pseudonym), and its pseudonym
        texts: list[str] = []
        for name in names:
            removed, examples, user_texts = _forget_in(ws, name, ids)
            if removed:
                out.events[name] = removed
                out.report_examples += examples
                texts.extend(user_texts)
                for run_id in _mark_runs(ws, name):
                    out.runs_marked.append(run_id)
                    fusion = ws.run_dir(run_id) / FUSION_FOLDER
                    if fusion.exists():
                        shutil.rmtree(fusion)
                        out.fusion_caches.append(run_id)
        if out.events:
            for name, n in out.events.items():  # the audit log says how much, never whose
                audit.record(
                    ws, "forget", name, f"{n:,} events of one user; runs marked: {len(out.runs_marked)}", actor
                )
            out.embeddings = forget_texts(ws.cache_dir, texts)
            compact(ws)
            out.compacted = True
    return out


def run_marks(ws: Workspace) -> dict[str, str]:
    """{run ID: mark} of every marked run (such as :data:`DATA_DELETED`)."""
    with ws.connect() as con:
        return {str(r): str(m) for r, m in con.execute("SELECT run_id, mark FROM run_marks").fetchall()}


def _forget_in(ws: Workspace, name: str, ids: list[str]) -> tuple[int, int, list[str]]:
    """Delete the user's rows from dataset ``name``: (events removed, report examples dropped, the events' texts)."""
    where = f"{S.DATASET} = ? AND {S.USER_ID} IN ({', '.join('?' for _ in ids)})"
    with ws.connect() as con:
        found = con.execute(f"SELECT count(*) FROM events WHERE {where}", [name, *ids]).fetchone()
        n = int(found[0]) if found else 0
        if not n:
            return 0, 0, []
        query = f"SELECT DISTINCT {S.TEXT} FROM events WHERE {where} AND {S.TEXT} IS NOT NULL"
        texts = [str(t) for (t,) in con.execute(query, [name, *ids]).fetchall()]
        con.execute("BEGIN TRANSACTION")
        try:
            bounds: list[int | None] = [None, *prefixes(con, name)]  # the whole dataset, and each appended-to prefix
            before = [stamp_of_digest(events_digest(con, name, below=b), b) for b in bounds]
            con.execute(f"DELETE FROM events WHERE {where}", [name, *ids])
            after = [stamp_of_digest(events_digest(con, name, below=b), b) for b in bounds]
            record_forget(con, name, list(zip(before, after, strict=True)))
            next_version(con, name)
            examples = _update_dataset(con, name, ids, n)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return n, examples, texts


def _update_dataset(con: duckdb.DuckDBPyConnection, name: str, ids: list[str], removed: int) -> int:
    """The dataset's new counts, its report's ``forgotten`` tally, no report example naming the user; -> dropped."""
    counts = con.execute(
        f"SELECT count(*), count(DISTINCT {S.USER_ID}) FROM events WHERE {S.DATASET} = ?", [name]
    ).fetchone()
    row = con.execute("SELECT report FROM datasets WHERE name = ?", [name]).fetchone()
    report, dropped = _scrub(json.loads(row[0]) if row and row[0] else {}, ids)
    tally = report.get("forgotten") if isinstance(report.get("forgotten"), dict) else {}
    report["forgotten"] = {"users": int(tally.get("users", 0)) + 1, "events": int(tally.get("events", 0)) + removed}
    con.execute(
        "UPDATE datasets SET n_events = ?, n_users = ?, report = ? WHERE name = ?",
        [*((int(counts[0]), int(counts[1])) if counts else (0, 0)), json.dumps(report), name],
    )
    return dropped


def _scrub(value: Any, ids: list[str]) -> tuple[Any, int]:
    """``value`` without any list element (an example row, a message) whose JSON text contains one of ``ids``."""
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            out[key], dropped = _scrub(item, ids)
            total += dropped
        return out, total
    if isinstance(value, list):
        kept, total = [], 0
        for item in value:
            if any(i in json.dumps(item, ensure_ascii=False) for i in ids):
                total += 1
                continue
            item, dropped = _scrub(item, ids)
            kept.append(item)
            total += dropped
        return kept, total
    return value, 0


def _mark_runs(ws: Workspace, name: str) -> list[str]:
    """Mark every run of dataset ``name`` :data:`DATA_DELETED`; -> their IDs, oldest first."""
    with ws.connect() as con:
        query = f"SELECT run_id FROM runs WHERE {S.DATASET} = ? ORDER BY created_at"
        runs = [str(r) for (r,) in con.execute(query, [name]).fetchall()]
        for run_id in runs:
            con.execute("INSERT OR REPLACE INTO run_marks VALUES (?, ?, now()::TIMESTAMP)", [run_id, DATA_DELETED])
    return runs
