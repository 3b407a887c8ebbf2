"""Fault injection at the ingest's input limits: decompression bombs, over-long lines, NUL bytes, SIGKILL.

- The size cap (``BEHAVIORLENS_MAX_FILE_MB``) holds for the decompressed bytes of every compressed
  format the reader takes (gzip CSV/TSV/JSONL/Parquet, Parquet's own codecs), and the read stops at
  the cap instead of inflating the whole file.
- A line over the 8 MB line limit, wherever it is and however long, and a line holding NUL bytes
  (a zero-filled tail) are rows with a reason: ``rows_read = rows_accepted + rows_rejected``.
- An ingest killed with SIGKILL leaves the workspace usable, the dataset absent or complete, and a
  second ingest of the same file succeeds with the full accounting.

Every file is generated here, in tmp_path.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.store.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
H = "user_id,item_id,timestamp,behavior,value,text\n"
T = "1700000000"
CAP_ENV = "BEHAVIORLENS_MAX_FILE_MB"
LIMIT = "the 8 MB line limit"


# -- decompressed size cap ---------------------------------------------------------------------------------------
def _csv(n: int, sep: str = ",") -> bytes:
    return (H + f"u1,i1,{T},view,,\n" * n).replace(",", sep).encode()


def _jsonl(n: int) -> bytes:
    return b'{"user_id": "u1", "item_id": "i1", "timestamp": 1700000000}\n' * n


def _parquet(n: int, compression: str) -> bytes:
    buf = io.BytesIO()
    table = pa.table({"user_id": ["u1"] * n, "item_id": ["i1"] * n, "text": ["x" * 1000] * n})
    pq.write_table(table, buf, compression=compression, use_dictionary=False)
    return buf.getvalue()


# name -> (bytes) for a given number of rows; 3,000+ rows of each is past a 1 MB cap once decompressed.
FORMATS: dict[str, Callable[[int], bytes]] = {
    "events.csv.gz": lambda n: gzip.compress(_csv(40 * n), 9),
    "events.tsv.gz": lambda n: gzip.compress(_csv(40 * n, "\t"), 9),
    "events.jsonl.gz": lambda n: gzip.compress(_jsonl(20 * n), 9),
    "multi_member.csv.gz": lambda n: gzip.compress(_csv(10)) + gzip.compress(f"u2,i2,{T},view,,\n".encode() * 40 * n),
    "events.parquet.gz": lambda n: gzip.compress(_parquet(n, "none"), 9),
    "events_zstd.parquet": lambda n: _parquet(n, "zstd"),
    "events_snappy.parquet": lambda n: _parquet(n, "snappy"),
}


def _mb(n_bytes: int) -> float:
    return n_bytes / 2**20


def _refused(cli, path: Path, root: Path) -> str:
    code, out, err = cli("ingest", str(path), "--json", "--workspace", str(root))
    assert code == 2 and out == "" and "Traceback" not in err, (code, out, err)
    assert Workspace(root).dataset_names() == []
    return err


@pytest.mark.parametrize("name", list(FORMATS))
def test_size_cap_counts_decompressed_bytes(name: str, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv(CAP_ENV, "1")
    bomb = tmp_path / name
    bomb.write_bytes(FORMATS[name](3000))
    assert _mb(bomb.stat().st_size) < 0.5  # the file itself is well under the cap
    err = _refused(cli, bomb, tmp_path / "ws")
    assert f"{name} " in err and "over the 1 MB cap on the decompressed size" in err, err
    assert "BEHAVIORLENS_MAX_FILE_MB" in err
    small = tmp_path / "small" / name  # the same format under the cap is read in full
    small.parent.mkdir()
    small.write_bytes(FORMATS[name](300))
    report = cli("ingest", str(small), "--json", "--workspace", str(tmp_path / "ws_small")).json()
    assert report["rows_read"] == report["rows_accepted"] > 0


@pytest.mark.parametrize("name", ["events.csv.gz", "events.jsonl.gz", "events.parquet.gz"])
def test_size_cap_stops_decompressing_at_the_cap(name: str, tmp_path: Path, cli, monkeypatch) -> None:
    """A bomb followed by a corrupt gzip member: reading past the cap would report the corruption."""
    monkeypatch.setenv(CAP_ENV, "1")
    bomb = tmp_path / name
    bomb.write_bytes(FORMATS[name](3000) + b"\x1f\x8b\x08\x00" + b"\xff" * 4096)
    err = _refused(cli, bomb, tmp_path / "ws")
    assert "over the 1 MB cap on the decompressed size" in err and "corrupt" not in err, err


# -- lines the reader cannot use are rows with a reason ----------------------------------------------------------
def _ingest(cli, path: Path, root: Path, *args: str) -> dict[str, Any]:
    report = cli("ingest", str(path), "--json", "--keep-ids", "--workspace", str(root), *args).json()
    assert report["rows_read"] == report["rows_accepted"] + report["rows_rejected"]
    assert report["rows_rejected"] == sum(report["rejected_by_reason"].values())
    assert Workspace(root).dataset(report["dataset"]).n_events == report["rows_accepted"]
    return report


def _long_line_file(folder: Path, fmt: str, mb: int) -> Path:
    """Two valid rows, a line of ``mb`` MB, two valid rows."""
    if fmt == "jsonl":
        rec = '{{"user_id": "{u}", "item_id": "i1", "timestamp": 1700000000{extra}}}\n'
        text = "".join(rec.format(u=f"u{k}", extra="") for k in range(2))
        text += rec.format(u="u2", extra=', "text": "' + "y" * (mb << 20) + '"')
        text += "".join(rec.format(u=f"u{k}", extra="") for k in range(3, 5))
    else:
        text = H + "".join(f"u{k},i1,{T},view,,\n" for k in range(2))
        text += f"u2,i2,{T},review,4," + "y" * (mb << 20) + "\n"
        text += "".join(f"u{k},i1,{T},view,,\n" for k in range(3, 5))
    path = folder / f"long_{mb}mb.{fmt}"
    path.write_bytes(gzip.compress(text.encode(), 1) if fmt.endswith(".gz") else text.encode())
    return path


@pytest.mark.parametrize(("fmt", "mb"), [("csv", 12), ("csv", 16), ("csv", 24), ("jsonl", 16), ("csv.gz", 16)])
def test_long_line_mid_file_is_one_row_with_its_reason(fmt: str, mb: int, tmp_path: Path, cli) -> None:
    report = _ingest(cli, _long_line_file(tmp_path, fmt, mb), tmp_path / "ws")
    assert (report["rows_read"], report["rows_accepted"]) == (5, 4)
    assert report["rejected_by_reason"] == {"line_too_long": 1}
    [example] = report["examples"]["line_too_long"]
    assert example["line"] == (3 if fmt == "jsonl" else 4)
    assert example["error"] == f"line of {mb}.0 MB is longer than {LIMIT}"
    assert example["raw"].startswith('{"user_id": "u2"' if fmt == "jsonl" else f"u2,i2,{T},review,4,yyy")


def _nul_tail_file(folder: Path, fmt: str, tail: int) -> Path:
    """12,000 valid rows (past the 256 KB sniff window), then ``tail`` zero bytes and no newline."""
    if fmt == "jsonl":
        body = "".join(f'{{"user_id": "u{k}", "item_id": "i{k}"}}\n' for k in range(12_000)).encode()
    else:
        body = (H + "".join(f"u{k},i{k},{T},view,,\n" for k in range(12_000))).encode()
    data = body + b"\x00" * tail
    path = folder / f"nul_tail_{tail}.{fmt}"
    path.write_bytes(gzip.compress(data, 1) if fmt.endswith(".gz") else data)
    return path


@pytest.mark.parametrize(
    ("fmt", "tail"), [("csv", 1 << 20), ("csv", 9 << 20), ("csv", 20 << 20), ("jsonl", 9 << 20), ("csv.gz", 9 << 20)]
)
def test_nul_filled_tail_is_counted_and_warned(fmt: str, tail: int, tmp_path: Path, cli) -> None:
    report = _ingest(cli, _nul_tail_file(tmp_path, fmt, tail), tmp_path / "ws")
    assert (report["rows_read"], report["rows_accepted"]) == (12_001, 12_000)
    assert report["rejected_by_reason"] == {"nul_bytes": 1}
    [example] = report["examples"]["nul_bytes"]
    line = 12_001 if fmt == "jsonl" else 12_002
    assert example["line"] == line and "holds NUL bytes" in example["error"]
    assert example["raw"].startswith("\\x00\\x00")
    assert any(f"hold NUL bytes (first at line {line})" in w for w in report["warnings"]), report["warnings"]


def test_nul_bytes_inside_a_row_reject_that_row_only(tmp_path: Path, cli) -> None:
    body = H + "".join(f"u{k},i{k},{T},view,,\n" for k in range(12_000))
    path = tmp_path / "nul_row.csv"
    path.write_bytes(body.encode() + f"u1,i\x001,{T},view,,\nu9,i9,{T},view,,\n".encode())
    report = _ingest(cli, path, tmp_path / "ws")
    assert (report["rows_read"], report["rows_accepted"]) == (12_002, 12_001)
    assert report["rejected_by_reason"] == {"nul_bytes": 1}
    assert report["examples"]["nul_bytes"][0]["line"] == 12_002


def test_items_file_counts_its_long_line(tmp_path: Path, cli) -> None:
    events = tmp_path / "events.csv"
    events.write_text(H + f"u1,i1,{T},view,,\nu1,i2,{T},view,,\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,one\ni9," + "t" * (16 << 20) + "\ni2,two\n")
    report = _ingest(cli, events, tmp_path / "ws", "--items", str(items))
    catalogue = report["items_file"]
    assert (catalogue["rows_read"], catalogue["rows_accepted"]) == (3, 2)
    assert catalogue["rejected_by_reason"] == {"line_too_long": 1}
    assert catalogue["examples"]["line_too_long"] == [{"line": 3, "error": f"line of 16.0 MB is longer than {LIMIT}"}]


# -- SIGKILL during an ingest ----------------------------------------------------------------------------------
N_ROWS = 150_000


def _child_env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1"}


def _kill_when(moment: str, root: Path, tmp: Path, log: Path) -> None:
    """Start `python -m core.cli ingest`, SIGKILL it at ``moment``; fail if it ends first."""
    db = root / "behaviorlens.duckdb"
    start_size = db.stat().st_size

    def reading() -> bool:  # the ingest's private scratch database exists
        return any(tmp.glob("behaviorlens-ingest-*"))

    def writing() -> bool:  # and the workspace file grows: rows are being inserted
        return reading() and db.stat().st_size > start_size

    def committing() -> bool:  # and the write-ahead log is there
        return writing() and db.with_suffix(".duckdb.wal").exists()

    trigger = {"reading": reading, "writing": writing, "committing": committing}[moment]
    cmd = [sys.executable, "-m", "core.cli", "ingest", str(log), "--name", "big", "--json", "--workspace", str(root)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_child_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline and not trigger():
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the ingest ended before {moment}: {proc.returncode} {err!r}"


@pytest.mark.parametrize("moment", ["reading", "writing", "committing"])
def test_sigkill_during_ingest_leaves_no_partial_dataset(moment: str, tmp_path: Path, cli) -> None:
    log = tmp_path / "big.csv"
    with open(log, "w") as fh:
        fh.write(H)
        fh.writelines(
            f"u{k % 40_000},i{k * 7 % 15_000},{int(T) + k},{'view' if k % 3 else 'cart'},,\n" for k in range(N_ROWS)
        )
    root = tmp_path / "ws"
    Workspace(root)  # the database exists before the child starts: its growth marks the write
    _kill_when(moment, root, tmp_path / "tmp", log)

    ws = Workspace(root)  # opens after the kill (replays or drops what the WAL holds)
    stored = int(ws.query("SELECT count(*) AS n FROM events WHERE dataset = 'big'")["n"][0])
    items = int(ws.query("SELECT count(*) AS n FROM items WHERE dataset = 'big'")["n"][0])
    if "big" in ws.dataset_names():  # committed before the kill: complete
        assert ws.dataset("big").n_events == stored == N_ROWS and items > 0
    else:  # never half-written
        assert stored == 0 and items == 0

    report = cli("ingest", str(log), "--name", "big", "--json", "--workspace", str(root)).json()
    assert (report["rows_read"], report["rows_accepted"], report["rows_rejected"]) == (N_ROWS, N_ROWS, 0)
    ws = Workspace(root)
    assert ws.dataset("big").n_events == N_ROWS
    assert int(ws.query("SELECT count(*) AS n FROM events WHERE dataset = 'big'")["n"][0]) == N_ROWS
