"""`behaviorlens forget --user`: a user's rows, and every stored thing naming them, leave the workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tiny_support import TINY_MODEL

from core.errors import DatasetInUseError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.model.embedding_cache import EmbeddingCache, forget_texts, text_key
from core.runs.forget import DATA_DELETED, run_marks
from core.runs.fusion import user_top
from core.runs.records import list_runs
from core.runs.run import open_run
from core.runs.train import train_run
from core.store.workspace import Workspace

OWN_WORDS = "zqx forgotten words of the first user"  # a text no other user wrote


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _naming(root: Path, needles: list[str]) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``needles`` (UTF-8)."""
    return [name for name, data in _files(root).items() if any(n.encode() in data for n in needles)]


@pytest.fixture()
def shop(tmp_path: Path, tiny_data: Any, tiny_bert_dir: Path) -> dict[str, Any]:
    """A workspace whose dataset holds user U0001's events (one with their own words, one rejected row naming
    them), a tiny run trained on it, and that run's fusion cache."""
    folder = tmp_path / "data"
    data = tiny_data(folder, 5)
    events = pd.read_csv(folder / "events.csv")
    user = str(data.events["user_id"].iloc[0])
    extra = events[events["user_id"] == user].head(2).copy()
    extra["text"] = [OWN_WORDS, None]
    extra.iloc[1, extra.columns.get_loc("timestamp")] = "not a time"  # rejected, an example naming the user
    pd.concat([events, extra]).to_csv(folder / "events.csv", index=False)
    ws = Workspace(tmp_path / "ws")
    report = ingest(ws, folder / "events.csv", folder / "items.csv", IngestOptions(name="shop"))
    settings = {
        "device": "cpu",
        "encoder": str(tiny_bert_dir),
        "model": dict(TINY_MODEL),
        "train": {"epochs": 1, "threads": 1},
    }
    run_id = train_run(ws, "shop", settings)
    stored = ws.pseudonymize([user])[0]
    user_top(open_run(ws, run_id), stored, 5)  # writes the run's fusion cache: every user's scores and ID
    assert (ws.run_dir(run_id) / "fusion").is_dir()
    assert _naming(ws.root, [stored]), "the fixture must store the user's pseudonym somewhere"
    return {
        "ws": ws,
        "user": user,
        "stored": stored,
        "run": run_id,
        "report": report,
        "folder": folder,
        "n": len(events),
    }


def test_forget_leaves_no_row_cache_entry_or_string_of_the_user(shop: dict[str, Any], cli: Any) -> None:
    ws, user, stored, run_id = shop["ws"], shop["user"], shop["stored"], shop["run"]
    n_user = int(ws.query("SELECT count(*) AS n FROM events WHERE user_id = ?", [stored])["n"].iloc[0])
    before = ws.dataset("shop")
    assert before.report["examples"], "the ingest report holds an example row of the user"

    result = cli("forget", "--user", user, "--json", workspace=ws.root).json()

    assert result["events"] == {"shop": n_user} and result["events_total"] == n_user
    assert result["report_examples"] >= 1 and result["runs_marked"] == [run_id] and result["fusion_caches"] == [run_id]
    assert result["compacted"] is True
    assert _naming(ws.root, [stored, user, OWN_WORDS]) == []  # no byte of the user in any file, database included
    after = ws.dataset("shop")
    assert after.n_events == before.n_events - n_user and after.n_users == before.n_users - 1
    assert after.report["forgotten"] == {"users": 1, "events": n_user}
    accepted, read = after.report["rows_accepted"], after.report["rows_read"]
    assert after.n_events == accepted - n_user and read == accepted + after.report["rows_rejected"]  # accounted for

    runs = list_runs(ws).set_index("run_id")
    assert runs.loc[run_id, "mark"] == DATA_DELETED and run_marks(ws) == {run_id: DATA_DELETED}
    rec = open_run(ws, run_id).recommender()  # still loads, on the rows without the user
    assert stored not in set(rec.data_.users) and len(rec.data_.users) == after.n_users

    files = _files(ws.root)
    again = cli("forget", "--user", user, workspace=ws.root)
    assert again.code == 0 and "nothing to remove" in again.out
    unchanged = {k: v for k, v in _files(ws.root).items() if k != ".lock"}  # the lock file names its last holder
    assert unchanged == {k: v for k, v in files.items() if k != ".lock"}  # idempotent: no other file changes


def test_forget_takes_the_pseudonym_and_one_dataset(shop: dict[str, Any], cli: Any) -> None:
    ws, stored = shop["ws"], shop["stored"]
    other = cli("forget", "--user", stored, "--dataset", "nope", workspace=ws.root)
    assert other.code == 1 and "nope" in other.err
    empty = cli("forget", "--user", " ", workspace=ws.root)
    assert empty.code == 2 and "user" in empty.err
    out = cli("forget", "--user", stored, "--dataset", "shop", workspace=ws.root)
    assert out.code == 0 and "removed" in out.out and "'shop'" in out.out
    assert ws.query("SELECT count(*) AS n FROM events WHERE user_id = ?", [stored])["n"].iloc[0] == 0


def test_the_original_log_cannot_bring_a_forgotten_user_back_under_marked_runs(shop: dict[str, Any], cli: Any) -> None:
    """The marked runs depend on the rows without the user: ingesting the original log again is refused."""
    ws, folder = shop["ws"], shop["folder"]
    assert cli("forget", "--user", shop["user"], workspace=ws.root).code == 0
    with pytest.raises(DatasetInUseError, match="shop"):
        ingest(ws, folder / "events.csv", folder / "items.csv", IngestOptions(name="shop"))
    assert ws.query("SELECT count(*) AS n FROM events WHERE user_id = ?", [shop["stored"]])["n"].iloc[0] == 0


def test_forgotten_texts_leave_the_embedding_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache" / "enc", 3, "enc")
    texts = ["a review of mine", "an item title", "another title"]
    cache.add([text_key(t) for t in texts], np.arange(9, dtype=np.float32).reshape(3, 3) + 1)
    assert forget_texts(tmp_path / "cache", ["a review of mine", "never cached"]) == 1
    found = cache.lookup([text_key(t) for t in texts])
    assert set(found) == {text_key("an item title"), text_key("another title")}
    np.testing.assert_array_equal(found[text_key("an item title")], [4, 5, 6])
    shard = next((tmp_path / "cache" / "enc").glob("*.npy"))
    assert np.load(shard)[0].tolist() == [0, 0, 0]  # the vector itself is gone, not only its index entry
    assert (
        hashlib.sha256(b"a review of mine").hexdigest() not in (tmp_path / "cache" / "enc" / "index.json").read_text()
    )
    assert forget_texts(tmp_path / "cache", ["a review of mine"]) == 0
