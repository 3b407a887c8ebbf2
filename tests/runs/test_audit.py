"""The audit log: every ingest, training, forget and run deletion is appended with who, what and when."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL

from core.store import audit
from core.store.workspace import Workspace


def test_the_cli_records_who_did_what_and_never_a_user_id(
    cli: Any, tiny_data: Any, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(audit.ACTOR_ENV, "analyst@example.org")
    data = tiny_data(tmp_path / "data", 5)
    ws_dir = tmp_path / "ws"
    assert cli("ingest", str(tmp_path / "data" / "events.csv"), "--name", "shop", workspace=ws_dir).code == 0
    config = tmp_path / "tiny.json"
    settings = {"encoder": str(tiny_bert_dir), "model": TINY_MODEL, "train": {"epochs": 1, "threads": 1}}
    config.write_text(json.dumps(settings), encoding="utf-8")
    trained = cli("train", "--dataset", "shop", "--config", str(config), "--device", "cpu", "--json", workspace=ws_dir)
    run_id = trained.json()["run"]
    user = str(data.events["user_id"].iloc[0])
    assert cli("forget", "--user", user, workspace=ws_dir).code == 0
    assert cli("runs", "delete", run_id, workspace=ws_dir).code == 0

    rows = cli("audit", "--json", workspace=ws_dir).json()
    assert [(r["action"], r["target"]) for r in rows] == [
        ("delete run", run_id),
        ("forget", "shop"),
        ("train", run_id),
        ("ingest", "shop"),
    ]  # newest first
    assert {r["actor"] for r in rows} == {"analyst@example.org"}
    assert rows[1]["detail"].startswith(f"{len([1 for u in data.events['user_id'] if u == user]):,} events of one user")
    stored = Workspace(ws_dir).pseudonymize([user])[0]
    assert not [r for r in rows if user in r["detail"] or stored in r["detail"]]  # how much, never whose
    assert rows[-1]["detail"].startswith("events.csv: ") and rows[-1]["at"].endswith("Z")
    assert len(cli("audit", "--limit", "2", "--json", workspace=ws_dir).json()) == 2
    bad = cli("audit", "--limit", "0", workspace=ws_dir)
    assert bad.code == 2 and "--limit 0" in bad.err


def test_the_actor_is_the_process_user_and_host_without_a_name(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(audit.ACTOR_ENV, raising=False)
    audit.record(ws, "export", "some-run", "global influence CSV")
    (row,) = audit.entries(ws).to_dict("records")
    assert row["actor"] == audit.process_actor() and "@" in row["actor"]
    with pytest.raises(ValueError, match="audit action 'peek'"):
        audit.record(ws, "peek", "x")
