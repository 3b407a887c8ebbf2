"""`behaviorlens ingest NEW --append-to DATASET`: new events join a stored dataset, and earlier runs keep theirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core import schema as S
from core.errors import DataError, NotFoundError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs.forget import forget_user
from core.runs.run import open_run
from core.runs.train import train_run
from core.store.versions import DATA_KEY, dataset_versions
from core.store.workspace import Workspace

OVERLAP = 12  # rows of the first block the second export repeats


def _split(folder: Path) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
    """The tiny log in two time blocks: ``first.csv`` (70%) and ``second.csv`` (the rest, after the last OVERLAP
    rows of the first, one of those twice, an event on a new item and one by a new user)."""
    events = pd.read_csv(folder / "events.csv").sort_values("timestamp", kind="stable").reset_index(drop=True)
    cut = int(len(events) * 0.7)
    first, rest = events.iloc[:cut], events.iloc[cut:]
    last_ts = str(rest["timestamp"].iloc[-1])
    extra = pd.DataFrame(
        [
            {"user_id": "U0001", "item_id": "I9999", "timestamp": last_ts, "behavior": "view"},
            {"user_id": "NEWUSER", "item_id": "I0001", "timestamp": last_ts, "behavior": "purchase"},
        ]
    )
    repeat = first.iloc[[-1]]  # stored once, twice in the new export: one copy is new
    second = pd.concat([first.iloc[-OVERLAP:], repeat, rest, extra], ignore_index=True)
    first.to_csv(folder / "first.csv", index=False)
    second.to_csv(folder / "second.csv", index=False)
    return folder / "first.csv", folder / "second.csv", first, second


@pytest.fixture()
def shop(tmp_path: Path, tiny_data: Any, tiny_bert_dir: Path) -> dict[str, Any]:
    """A workspace with the first block ingested as ``shop`` and a tiny run trained on it."""
    folder = tmp_path / "data"
    tiny_data(folder, 5)
    first, second, first_rows, second_rows = _split(folder)
    ws = Workspace(tmp_path / "ws")
    ingest(ws, first, folder / "items.csv", IngestOptions(name="shop"))
    settings = {"device": "cpu", "encoder": str(tiny_bert_dir), "train": {"epochs": 1, "threads": 1}}
    from tiny_support import TINY_MODEL

    settings["model"] = dict(TINY_MODEL)
    run_id = train_run(ws, "shop", settings)
    return {"ws": ws, "first": first, "second": second, "rows": (first_rows, second_rows), "run": run_id}


def _scores(ws: Workspace, run_id: str) -> tuple[int, np.ndarray]:
    """(users the loaded run holds, the scores of the first users' top 5 items)."""
    rec = open_run(ws, run_id).recommender()
    tops = [rec.recommend(str(u), k=5) for u in rec.data_.users[:3]]
    return rec.data_.n_users, np.concatenate([t.select_dtypes("number").to_numpy(float).ravel() for t in tops])


def test_append_adds_only_new_events_and_accounts_for_every_row(shop: dict[str, Any], cli: Any) -> None:
    ws = shop["ws"]
    first_rows, second_rows = shop["rows"]
    before = ws.dataset("shop")
    version = dataset_versions(ws)["shop"]

    out = cli("ingest", str(shop["second"]), "--append-to", "shop", "--json", workspace=ws.root).json()

    stored = OVERLAP  # the overlap: its last row comes twice, and only one copy is stored, so the other is new
    assert out["rows_read"] == len(second_rows) == out["rows_accepted"] + out["rows_rejected"]
    assert out["rejected_by_reason"].get(S.R_STORED) == stored
    added = out["appended"]
    assert added["events_added"] == out["rows_accepted"] == len(second_rows) - stored
    assert added["already_stored"] == stored and added["items_added"] == 1  # I9999
    after = ws.dataset("shop")
    assert after.n_events == before.n_events + added["events_added"] == added["events_after"]
    assert after.n_users == before.n_users + 1 and after.n_items == before.n_items + 1
    assert dataset_versions(ws)["shop"] == version + 1 == out["version"]
    assert after.sources == [*before.sources, "second.csv"]
    assert after.report["rows_read"] == before.report["rows_read"]  # the first ingest's accounting stays
    assert after.report["appends"][0]["rows_read"] == len(second_rows)
    assert "I9999" in set(ws.items("shop")[S.ITEM_ID])
    assert any("already stored" in w for w in out["warnings"])
    # the stored log is the union: every distinct event of both blocks, the real repeat twice
    events = ws.events("shop", (*S.EVENT_FIELDS, S.ROW))
    assert len(events) == len(first_rows) + len(second_rows) - stored
    assert events[S.ROW].is_unique

    again = cli("ingest", str(shop["second"]), "--append-to", "shop", "--json", workspace=ws.root).json()
    assert again["rows_accepted"] == 0 and again["rejected_by_reason"][S.R_STORED] == len(second_rows)
    assert again["appended"]["events_added"] == 0 and ws.dataset("shop").n_events == after.n_events  # idempotent
    assert dataset_versions(ws)["shop"] == version + 1  # nothing changed, no new version
    text = cli("ingest", str(shop["second"]), "--append-to", "shop", workspace=ws.root)
    assert text.code == 0 and "appended 0 events" in text.out


def test_a_run_trained_before_the_append_keeps_reading_its_own_rows(shop: dict[str, Any]) -> None:
    ws, run_id = shop["ws"], shop["run"]
    users, scores = _scores(ws, run_id)
    ingest(ws, shop["second"], options=IngestOptions(append_to="shop"))

    later_users, later_scores = _scores(ws, run_id)  # a fresh load, after the append
    assert later_users == users
    np.testing.assert_allclose(later_scores, scores, rtol=1e-6, atol=1e-6)
    # a run trained now sees every row
    new_run = train_run(ws, "shop", open_run(ws, run_id).settings)
    assert len(open_run(ws, new_run).recommender().data_.users) == ws.dataset("shop").n_users
    forget_user(ws, "U0003", "shop")  # both runs follow a forget after the append
    for rid, n in ((run_id, users - 1), (new_run, ws.dataset("shop").n_users)):
        assert len(open_run(ws, rid).recommender().data_.users) == n


def test_a_stamp_without_a_bound_finds_it_and_forgets_after_the_append_follow(shop: dict[str, Any]) -> None:
    """A run stamped before bounds existed finds its rows through the append record, and a forget after the
    append (of a user of the first block) keeps both runs loadable, without the user."""
    ws, run_id = shop["ws"], shop["run"]
    with ws.connect() as con:
        config = json.loads(con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()[0])
        config[DATA_KEY].pop("rows_below")
        con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), run_id])
    users, _ = _scores(ws, run_id)
    ingest(ws, shop["second"], options=IngestOptions(append_to="shop"))
    assert _scores(ws, run_id)[0] == users

    forget_user(ws, "U0002", "shop")
    rec = open_run(ws, run_id).recommender()
    assert len(rec.data_.users) == users - 1 and ws.pseudonymize(["U0002"])[0] not in set(rec.data_.users)


def test_an_append_is_refused_when_it_cannot_continue_the_dataset(shop: dict[str, Any], tmp_path: Path) -> None:
    ws, second = shop["ws"], shop["second"]
    with pytest.raises(NotFoundError, match="nope"):
        ingest(ws, second, options=IngestOptions(append_to="nope"))
    with pytest.raises(DataError, match="--keep-ids.*pseudonymized"):
        ingest(ws, second, options=IngestOptions(append_to="shop", keep_ids=True))
    with pytest.raises(DataError, match="--name 'other' and --append-to 'shop'"):
        ingest(ws, second, options=IngestOptions(append_to="shop", name="other"))
    with pytest.raises(DataError, match="has timestamps.*--map timestamp=COLUMN"):
        ingest(ws, second, options=IngestOptions(append_to="shop", mapping={"timestamp": None}))
    assert dataset_versions(ws)["shop"] == 1 and ws.dataset("shop").n_events == len(shop["rows"][0])


def test_a_log_without_timestamps_continues_in_file_order(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (tmp_path / "a.csv").write_text("user,item\nu1,i1\nu1,i2\nu2,i1\n")
    (tmp_path / "b.csv").write_text("user,item\nu1,i3\nu3,i1\n")
    ingest(ws, tmp_path / "a.csv", options=IngestOptions(name="plain"))
    out = ingest(ws, tmp_path / "b.csv", options=IngestOptions(append_to="plain"))
    assert out.rows_accepted == 2 and out.rejected_by_reason == {}  # without timestamps no row equals a stored one
    events = ws.events("plain", (*S.EVENT_FIELDS, S.ROW)).sort_values(S.ROW)
    assert list(events[S.ITEM_ID]) == ["i1", "i2", "i1", "i3", "i1"]
    assert events[S.TIMESTAMP].is_monotonic_increasing  # the appended rows come after the stored ones
