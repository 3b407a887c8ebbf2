"""The workspace: dataset metadata, atomic writes, concurrent ingests, pseudonymization."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import schema as S
from core.errors import DataError, NotFoundError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.store.files import atomic_write_bytes, save_json
from core.store.workspace import Workspace, validate_name

REPO = Path(__file__).resolve().parents[2]

# Distinctive raw IDs: long enough that a byte match cannot be chance.
RAW_USERS = [
    "RAWUSER-ALPHA-7f3c9e1d",
    "RAWUSER-BETA-0a1b2c3d",
    "RAWUSER-GAMMA-5e6f7a8b",
    "RAWUSER-DELTA-long-" + "z" * 280,
]
LOG = (
    "user_id,item_id,timestamp,behavior,value\n"
    f"{RAW_USERS[0]},ITEM-ONE,1700000000,pv,\n"
    f"{RAW_USERS[0]},ITEM-ONE,1700000000,pv,\n"  # exact duplicate: in duplicate examples
    f"{RAW_USERS[1]},ITEM-TWO,1700000001,rate,4\n"
    f"{RAW_USERS[2]},,1700000002,pv,\n"  # rejected: in examples
    f"{RAW_USERS[2]},ITEM-TWO,garbage,pv,\n"  # rejected: bad timestamp
    f"{RAW_USERS[3]},ITEM-ONE,1700000003,pv,\n"  # rejected: ID too long
    f"{RAW_USERS[1]},ITEM-TWO,1700000004\n"  # malformed: raw line in examples only with keep_ids
)


def workspace_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def raw_ids_found(root: Path) -> set[str]:
    blobs = workspace_bytes(root)
    return {u for u in RAW_USERS for b in blobs.values() if u[:22].encode() in b}


def stored_strings(ws: Workspace) -> list[str]:
    """Every VARCHAR value of every table in the workspace database."""
    cols = ws.query("SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'")
    out: list[str] = []
    for table, column in cols.itertuples(index=False):
        out += list(ws.query(f'SELECT "{column}" AS v FROM "{table}"')["v"].dropna())
    return out


def test_dataset_metadata_is_stored(ws, write_file) -> None:
    report = ingest(ws, write_file("log.csv", LOG), options=IngestOptions(name="meta"), source_names=["upload.csv"])
    info = ws.dataset("meta")
    assert info.name == "meta" and info.sources == ["upload.csv"]
    assert info.mapping == report.mapping and info.mapping[S.USER_ID] == "user_id"
    assert (info.n_events, info.n_users, info.n_items) == (3, 2, 2)
    assert info.pseudonymized and isinstance(info.created_at, pd.Timestamp)
    assert info.report["rows_read"] == 7 and info.report["rejected_by_reason"] == report.rejected_by_reason
    listed = ws.list_datasets()
    assert list(listed["name"]) == ["meta"] and int(listed["n_events"][0]) == 3
    ws.delete_dataset("meta")
    assert ws.dataset_names() == [] and ws.query("SELECT count(*) AS n FROM events")["n"][0] == 0
    with pytest.raises(NotFoundError, match="no dataset named 'meta'"):
        ws.dataset("meta")


def test_raw_user_ids_never_reach_workspace_files(ws, write_file, capsys) -> None:
    ingest(ws, write_file("log.csv", LOG), options=IngestOptions(name="pseudo"))
    assert raw_ids_found(ws.root) == set()
    assert not [s for s in stored_strings(ws) if any(u[:22] in s for u in RAW_USERS)]


def test_the_search_finds_raw_ids_when_they_are_kept(ws, write_file) -> None:
    """Validates the byte search above: with --keep-ids the same IDs are found."""
    ingest(ws, write_file("log.csv", LOG), options=IngestOptions(name="raw", keep_ids=True))
    assert raw_ids_found(ws.root) == set(RAW_USERS)
    assert {u for u in RAW_USERS if any(u[:22] in s for s in stored_strings(ws))} == set(RAW_USERS)


def test_the_key_is_private_and_never_printed(tmp_path, write_file, cli) -> None:
    root = tmp_path / "ws"
    out = cli("ingest", str(write_file("log.csv", LOG)), "--json", workspace=root)
    key = (root / ".key").read_bytes()
    assert out.code == 0 and len(key) == 32
    assert stat.S_IMODE((root / ".key").stat().st_mode) == 0o600
    for text in (out.out, out.err):
        assert key.hex() not in text and key.hex().upper() not in text and repr(key) not in text
        assert not any(u[:22] in text for u in RAW_USERS)
    assert json.loads(out.out)["id_mode"] == "pseudonymized"


def test_atomic_write_replaces_whole_files(tmp_path) -> None:
    target = tmp_path / "run" / "metrics.json"
    save_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["metrics.json"]


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "config.json"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["config.json"]


def test_workspace_location_from_env_and_argument(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(tmp_path / "from_env"))
    assert Workspace().root == (tmp_path / "from_env").resolve()
    assert Workspace(tmp_path / "explicit").db_path == (tmp_path / "explicit" / "behaviorlens.duckdb").resolve()


def test_names_are_validated() -> None:
    assert validate_name("run-1.2_a") == "run-1.2_a"
    for bad in ("", "../x", "a b", "x" * 65, "-lead"):
        with pytest.raises(DataError, match="invalid dataset name"):
            validate_name(bad)


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_ingesting_into_one_fresh_workspace(tmp_path) -> None:
    root = tmp_path / "shared_ws"  # not created yet: both processes race to create it and its key
    files = []
    for k in range(2):
        path = tmp_path / f"log{k}.csv"
        lines = "".join(f"user{k}_{j % 997},item{j % 1999},{1700000000 + j},pv\n" for j in range(60_000))
        path.write_text("user_id,item_id,timestamp,behavior\n" + lines)
        files.append(path)
    procs = [
        _spawn(["-m", "core.cli", "ingest", str(f), "--json", "--workspace", str(root), "--name", f"d{k}"])
        for k, f in enumerate(files)
    ]
    # and a third process re-ingesting d0 under the same name at the same time
    procs.append(
        _spawn(["-m", "core.cli", "ingest", str(files[0]), "--json", "--workspace", str(root), "--name", "d0"])
    )
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert json.loads(out)["rows_accepted"] == 60_000 and "Traceback" not in err
    ws = Workspace(root)
    assert sorted(ws.dataset_names()) == ["d0", "d1"]
    counts = ws.query("SELECT dataset, count(*) AS n, count(DISTINCT user_id) AS u FROM events GROUP BY ALL ORDER BY 1")
    assert counts.to_dict("records") == [
        {"dataset": "d0", "n": 60_000, "u": 997},
        {"dataset": "d1", "n": 60_000, "u": 997},
    ]
    for name in ("d0", "d1"):
        assert ws.dataset(name).n_events == 60_000
        assert len(ws.items(name)) == 1999
    # both processes used the one key: the same raw user has the same pseudonym in both datasets
    assert ws.resolve_user("d0", "user0_5") == ws.pseudonymize(["user0_5"])[0]


def test_concurrent_key_creation_yields_one_key(tmp_path) -> None:
    root = tmp_path / "keyrace"
    code = (
        "import sys; from core.store.workspace import Workspace; "
        "print(Workspace(sys.argv[1]).pseudonymize(['someone'])[0])"
    )
    procs = [_spawn(["-c", code, str(root)]) for _ in range(4)]
    outs = [(p.wait(timeout=60), p.stdout.read().strip(), p.stderr.read()) for p in procs]
    assert all(c == 0 for c, _, _ in outs), outs
    assert len({o for _, o, _ in outs}) == 1


def test_no_connection_prints_a_progress_bar(ws) -> None:
    """DuckDB prints a progress bar on stdout for a long query (on by default in a process whose stdout is a pipe):
    inside a command's --json output it would break it."""
    code = (
        "import sys; from pathlib import Path; from core.store.workspace import Workspace; "
        "from core.ingest.pipeline import _scratch; import duckdb\n"
        "q = \"SELECT current_setting('enable_progress_bar')\"\n"
        "print(duckdb.connect().execute(q).fetchone()[0])\n"
        "with Workspace(Path(sys.argv[1])).connect() as con: print(con.execute(q).fetchone()[0])\n"
        "with _scratch('256MB') as con: print(con.execute(q).fetchone()[0])\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code, str(ws.root)], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False", "False"]  # DuckDB's default here, then both of ours
