"""The bad-input corpus: malformed files generated here, each run through the real CLI.

Every file ends either in exit 2 with a specific message or in exit 0 with exact
accounting, and never in a traceback. All cases run through ``core.cli.main``
in-process; a parallel subprocess sweep runs a representative subset through
``python -m core.cli`` to check the real entry point.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.store.workspace import Workspace

H = "user_id,item_id,timestamp,behavior,value,text\n"
T = "1700000000"  # a valid epoch


@dataclass
class Case:
    """One corpus file and what must happen to it."""

    name: str
    data: bytes
    error: str | None = None  # exit 2 with this substring on stderr
    counts: tuple[int, int] | None = None  # (rows_read, rows_accepted) for exit 0
    reasons: dict[str, int] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any], Workspace], None] | None = None


def pq_bytes(columns: dict[str, pa.Array]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def rows(*lines: str, header: str = H) -> bytes:
    return (header + "".join(line + "\n" for line in lines)).encode()


def stored(ws: Workspace, column: str) -> list[Any]:
    values = ws.query(f"SELECT {column} AS c FROM events ORDER BY row")["c"].tolist()
    return [None if pd.isna(v) else v for v in values]


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _truncated_gzip() -> bytes:
    rng = random.Random(3)
    body = H + "".join(f"u{rng.randrange(10**9)},i{rng.randrange(10**9)},{T},view,,\n" for _ in range(20_000))
    packed = gzip.compress(body.encode())
    return packed[: len(packed) // 2]


def _gzip_bomb() -> bytes:
    """About 4 KB of gzip that decompresses to 2.4 MB of valid rows (past a 1 MB cap)."""
    return gzip.compress((H + f"u1,i1,{T},view,,\n" * 100_000).encode(), 9)


def _nul_tail() -> bytes:
    """12,000 valid rows (past the 256 KB sniff window), then 9 MB of zeros with no newline."""
    return rows(*[f"u{k},i{k},{T},view,," for k in range(12_000)]) + b"\x00" * (9 << 20)


def _check_limit_stated(reason: str, fragment: str) -> Callable[[dict[str, Any], Workspace], None]:
    def check(report: dict[str, Any], ws: Workspace) -> None:
        assert all(fragment in e["error"] for e in report["examples"][reason]), report["examples"]

    return check


def _check_same_instant(report: dict[str, Any], ws: Workspace) -> None:
    assert report["time_range"] == ["2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z"]


def _check_verbatim(column: str, expected: list[str]) -> Callable[[dict[str, Any], Workspace], None]:
    def check(report: dict[str, Any], ws: Workspace) -> None:
        assert stored(ws, column) == expected

    return check


def _check_warning(fragment: str) -> Callable[[dict[str, Any], Workspace], None]:
    def check(report: dict[str, Any], ws: Workspace) -> None:
        assert any(fragment in w for w in report["warnings"]), report["warnings"]

    return check


def _check_latin1(report: dict[str, Any], ws: Workspace) -> None:
    assert report["encoding"] == "latin-1" and stored(ws, "text") == ["café crème", None]


def _check_custom(report: dict[str, Any], ws: Workspace) -> None:
    assert report["behaviors"] == {"teleport": 2, "cart": 1, "view": 1} and report["custom_behaviors"] == ["teleport"]


def _check_duplicates(report: dict[str, Any], ws: Workspace) -> None:
    assert report["duplicates"] == 3 and report["duplicate_examples"][0]["copies"] == 3


def _check_trimmed_ids(report: dict[str, Any], ws: Workspace) -> None:
    assert report["users"] == 1 and report["items"] == 1


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(A1:A9)", "-2+3"]
HTML = "<script>alert('x')</script><img src=x onerror=alert(1)>"
SQLISH = "x'); DROP TABLE events;--"

CASES: list[Case] = [
    # --- unusable: exit 2 -------------------------------------------------------
    Case("empty.csv", b"", error="empty.csv is empty (0 bytes)"),
    Case("header_only.csv", H.encode(), error="has no data rows"),
    Case("header_only_crlf.csv", b"user_id,item_id\r\n", error="has no data rows"),
    Case("blank_lines.csv", b"\n \n\t\n\n", error="holds only blank lines"),
    Case("random_bytes.bin", _random_bytes(4096, 1), error="looks binary"),
    Case("image.csv", b"\x89PNG\r\n\x1a\n" + _random_bytes(2048, 2), error="looks binary"),
    Case("nul_in_text.csv", rows(f"u1,i1,{T},view,,a\x00b"), error="looks binary"),
    Case("wrong_delimiter.csv", b"user_id:item_id:timestamp\nu1:i1:1\nu2:i2:2\n", error="found a single column"),
    Case(
        "html_page.csv",
        b"<!DOCTYPE html>\n<html><body><h1>Not Found</h1></body></html>\n",
        error="found a single column",
    ),
    Case("no_user_column.csv", b"item_id,timestamp\ni1,1\n", error="no user_id column found in no_user_column.csv"),
    Case("no_item_column.csv", b"user_id,timestamp\nu1,1\n", error="no item_id column found in no_item_column.csv"),
    Case("headerless.csv", b"1,10,1700000000\n2,20,1700000001\n", error="name its columns with --columns"),
    Case(
        "columns_mismatch.tsv",
        b"1\t10\t3\n",
        args=["--columns", "user_id,item_id"],
        error="--columns names 2 columns but columns_mismatch.tsv has 3",
    ),
    Case("empty.csv.gz", gzip.compress(b""), error="is an empty gzip file"),
    Case("truncated.csv.gz", _truncated_gzip(), error="is a truncated or corrupt gzip file"),
    Case("fake.csv.gz", b"\x1f\x8b" + _random_bytes(512, 4), error="is a truncated or corrupt gzip file"),
    Case("array.json", b'[{"user_id": "u1", "item_id": "i1"}]', error="is a JSON array, not JSON lines"),
    Case("all_broken.jsonl", b'{"user_id": \n{oops\n', error="no line holds a JSON object"),
    Case("utf16.csv", H.encode("utf-16"), error="is UTF-16 encoded"),
    Case("corrupt.parquet", b"PAR1" + _random_bytes(300, 5), error="is not a readable Parquet file"),
    Case(
        "empty.parquet",
        pq_bytes({"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string())}),
        error="has no data rows",
    ),
    Case("no_ids.parquet", pq_bytes({"who": ["a"], "what": ["b"]}), error="no user_id column found"),
    Case(
        "over_cap.csv",
        rows(*[f"u{k},i{k},{T},view,," for k in range(200)]),
        env={"BEHAVIORLENS_MAX_FILE_MB": "0.001"},
        error="over the 0.0 MB cap: split the file or raise the cap with BEHAVIORLENS_MAX_FILE_MB",
    ),
    Case(
        "bomb.csv.gz",
        _gzip_bomb(),
        env={"BEHAVIORLENS_MAX_FILE_MB": "1"},
        error="bomb.csv.gz decompresses to more than 1 MB, over the 1 MB cap on the decompressed size",
    ),
    # --- usable: exit 0 with exact accounting ----------------------------------------
    Case(
        "unparseable_timestamps.csv",
        rows(
            f"u1,i1,{T},view,,",
            "u2,i2,yesterday,view,,",
            "u3,i3,,view,,",
            "u4,i4,2024-02-30,view,,",
            "u5,i5,99999999999999999999,view,,",
        ),
        counts=(5, 1),
        reasons={"bad_timestamp": 3, "missing_timestamp": 1},
    ),
    Case(
        "mixed_timestamps.csv",
        rows(
            f"u1,i1,{T},view,,",
            "u1,i2,1700000000000,view,,",
            "u1,i3,2023-11-14T22:13:20Z,view,,",
            "u1,i4,2023-11-15T00:13:20+02:00,view,,",
            "u1,i5,2023-11-14 22:13:20 UTC,view,,",
            "u1,i6,2023-11-14T22:13:20,view,,",
        ),
        counts=(6, 6),
        check=_check_same_instant,
    ),
    Case(
        "out_of_range_ratings.csv",
        rows(
            f"u1,i1,{T},rate,5,",
            f"u1,i2,{T},rate,6,",
            f"u1,i3,{T},rate,-1,",
            f"u1,i4,{T},rate,five,",
            f"u1,i5,{T},rate,,",
            f"u1,i6,{T},review,5.5,ok",
            f"u1,i7,{T},rate,NaN,",
            f"u1,i8,{T},view,999,",
        ),
        counts=(8, 2),
        reasons={"rating_out_of_range": 3, "non_numeric_value": 2, "missing_rating": 1},
    ),
    Case(
        "nan_empty_ids.csv",
        rows(
            f",i1,{T},view,,",
            f"NaN,i1,{T},view,,",
            f"null,i1,{T},view,,",
            f"u1, ,{T},view,,",
            f"u1,None,{T},view,,",
            f"u1,i1,{T},view,,",
        ),
        counts=(6, 1),
        reasons={"missing_user_id": 3, "missing_item_id": 2},
    ),
    Case(
        "nan_ids.parquet",
        pq_bytes(
            {"user_id": pa.array([1.0, float("nan"), None, 4.0]), "item_id": pa.array([7, 8, 9, None], pa.int64())}
        ),
        counts=(4, 1),
        reasons={"missing_user_id": 2, "missing_item_id": 1},
        args=["--keep-ids"],
        check=_check_verbatim("user_id", ["1"]),
    ),
    Case(
        "one_mb_text.csv",
        rows(f'u1,i1,{T},review,4,"' + "x" * (1 << 20) + '"', f"u2,i2,{T},view,,"),
        counts=(2, 2),
        check=lambda r, ws: ws.query("SELECT max(length(text)) AS n FROM events")["n"][0] == 1 << 20,
    ),
    Case(
        "line_over_8mb.csv",
        rows(f"u1,i1,{T},review,4," + "y" * (9 << 20), f"u2,i2,{T},view,,"),
        counts=(2, 1),
        reasons={"line_too_long": 1},
        check=_check_limit_stated("line_too_long", "line of 9.0 MB is longer than the 8 MB line limit"),
    ),
    Case(
        "line_16mb_mid.csv",
        rows(f"u1,i1,{T},view,,", f"u2,i2,{T},review,4," + "y" * (16 << 20), f"u3,i3,{T},view,,"),
        counts=(3, 2),
        reasons={"line_too_long": 1},
        check=_check_limit_stated("line_too_long", "line of 16.0 MB is longer than the 8 MB line limit"),
    ),
    Case(
        "nul_tail.csv",
        _nul_tail(),
        counts=(12_001, 12_000),
        reasons={"nul_bytes": 1},
        check=_check_warning("hold NUL bytes (first at line 12002)"),
    ),
    Case(
        "quoted_newlines.csv",
        rows(f'u1,i1,{T},review,4,"line one\nline two"', f"u2,i2,{T},view,,", f'u3,i3,{T},review,3,"a\r\n\r\nb, c"'),
        counts=(3, 3),
        check=_check_verbatim("text", ["line one\nline two", None, "a\r\n\r\nb, c"]),
    ),
    Case(
        "bom.csv",
        b"\xef\xbb\xbf" + rows(f"u1,i1,{T},view,,"),
        counts=(1, 1),
        check=lambda r, ws: r["mapping"]["user_id"] == "user_id",
    ),
    Case(
        "latin1.csv",
        rows(f"u1,i1,{T},review,4,café crème", f"u2,i2,{T},view,,").decode().encode("latin-1"),
        counts=(2, 2),
        check=_check_latin1,
    ),
    Case(
        "duplicate_rows.csv",
        rows(*[f"u1,i1,{T},view,,"] * 3, f"u2,i1,{T},view,,", f"u2,i1,{T},view,,", f"u2,i1,{T},cart,,"),
        counts=(6, 6),
        check=_check_duplicates,
    ),
    Case(
        "duplicate_rows_dropped.csv",
        rows(*[f"u1,i1,{T},view,,"] * 3, f"u2,i1,{T},view,,"),
        args=["--drop-duplicates"],
        counts=(4, 2),
        reasons={"duplicate": 2},
    ),
    Case(
        "unknown_behaviors.csv",
        rows(f"u1,i1,{T},teleport,,", f"u1,i2,{T},Teleport,,", f"u1,i3,{T},Add To Cart,,", f"u1,i4,{T},PV,,"),
        counts=(4, 4),
        check=_check_custom,
    ),
    Case(
        "numeric_codes.csv",
        rows(f"u1,i1,{T},0,,", f"u1,i2,{T},3,,"),
        counts=(2, 2),
        check=_check_warning("--behavior-codes"),
    ),
    Case(
        "formula_injection.csv",
        rows(
            *[
                f'u{k},"{f.replace(chr(34), chr(34) * 2)}",{T},view,,"{f.replace(chr(34), chr(34) * 2)}"'
                for k, f in enumerate(FORMULAS)
            ]
        ),
        counts=(4, 4),
        check=_check_verbatim("item_id", FORMULAS),
    ),
    Case(
        "html_script.csv",
        rows(f'u1,i1,{T},review,4,"{HTML}"', f"u2,<b>i2</b>,{T},view,,"),
        counts=(2, 2),
        check=_check_verbatim("text", [HTML, None]),
    ),
    Case(
        "sql_in_header.csv",
        f'user_id,item_id,"{SQLISH}","we""ird"\nu1,i1,a,b\n'.encode(),
        counts=(1, 1),
        check=lambda r, ws: r["columns"][2:] == [SQLISH, 'we"ird'],
    ),
    Case(
        "wrong_types.parquet",
        pq_bytes(
            {
                "user_id": pa.array([1.0, 2.0, 3.0]),
                "item_id": pa.array([True, False, True]),
                "timestamp": pa.array(["2024-01-01", "bad", "2024-01-02"]),
                "value": pa.array([b"4", b"5", b"x"]),
            }
        ),
        counts=(3, 1),
        reasons={"bad_timestamp": 1, "non_numeric_value": 1},
    ),
    Case(
        "typed.parquet",
        pq_bytes(
            {
                "user_id": pa.array(["u1", "u2"]),
                "item_id": pa.array([1, 2], pa.int32()),
                "timestamp": pa.array([1700000000000, 1700000001000], pa.timestamp("ms")),
                "rating": pa.array([4.0, 9.0]),
            }
        ),
        counts=(2, 1),
        reasons={"rating_out_of_range": 1},
    ),
    Case(
        "broken_line.jsonl",
        b'{"user_id":"u1","item_id":"i1"}\n{"user_id":"u2","item_id":\n\n{"user_id":"u3","item_id":"i3"}\n"text"\n',
        counts=(4, 2),
        reasons={"malformed_row": 2},
    ),
    Case(
        "nested.jsonl",
        b'{"user_id":"u1","item_id":"i1","extra":{"a":[1,2]}}\n{"user_id":null,"item_id":"i2"}\n{"user_id":"u3"}\n',
        counts=(3, 1),
        reasons={"missing_user_id": 1, "missing_item_id": 1},
    ),
    Case(
        "crlf.jsonl.gz",
        gzip.compress(b'{"user_id":"u1","item_id":"i1"}\r\n{"user_id":"u2","item_id":"i2"}\r\n'),
        counts=(2, 2),
    ),
    Case(
        "duplicate_header.csv",
        b"user_id,item_id,item_id,USER_ID\nu1,i1,x,y\nu2,i2,x,y\n",
        counts=(2, 2),
        check=lambda r, ws: r["columns"] == ["user_id", "item_id", "item_id_2", "USER_ID_2"],
    ),
    Case(
        "crlf.csv",
        rows(f"u1,i1,{T},view,,", f"u2,i2,{T},view,,").replace(b"\n", b"\r\n"),
        counts=(2, 2),
        check=_check_verbatim("behavior", ["view", "view"]),
    ),
    Case(
        "trailing_delimiters.csv",
        b"user_id,item_id,timestamp\nu1,i1,1700000000,\nu2,i2,1700000001,\n",
        counts=(2, 2),
        check=_check_warning("trailing delimiter"),
    ),
    Case(
        "ragged_rows.csv",
        rows(f"u1,i1,{T},view,,", f"u2,i2,{T},view", f"u3,i3,{T},view,,,extra", f"u4,i4,{T},view,,"),
        counts=(4, 2),
        reasons={"malformed_row": 2},
    ),
    Case(
        "unterminated_quote.csv",
        rows(f"u1,i1,{T},view,,", f'u2,i2,{T},review,4,"never closed', f"u3,i3,{T},view,,"),
        counts=(2, 1),
        reasons={"malformed_row": 1},
        check=_check_warning("unterminated quote"),
    ),
    Case(
        "long_ids.csv",
        rows("u" * 300 + f",i1,{T},view,,", f"u1,{'i' * 257},{T},view,,", f"u1,i1,{T},view,,"),
        counts=(3, 1),
        reasons={"id_too_long": 2},
    ),
    Case(
        "whitespace_ids.csv",
        rows(f"  u1 ,i1,{T},view,,", f"u1,  i1,{T},view,,"),
        counts=(2, 2),
        check=_check_trimmed_ids,
    ),
    Case(
        "leading_zero_ids.csv",
        rows(f"007,i1,{T},view,,", f"07,i1,{T},view,,", f"7,i1,{T},view,,"),
        counts=(3, 3),
        check=lambda r, ws: r["users"] == 3,
    ),
    Case(
        "emoji_ids.csv",
        rows(f"👩‍💻,i1,{T},view,,", f"用户,i1,{T},view,,"),
        counts=(2, 2),
        args=["--keep-ids"],
        check=_check_verbatim("user_id", ["👩‍💻", "用户"]),
    ),
    Case("control_chars.csv", rows(f"u1,i1,{T},view,,\x07bell\x1b[31m"), counts=(1, 1)),
    Case(
        "all_rejected.csv",
        rows(f",i1,{T},view,,", f"u1,,{T},view,,"),
        counts=(2, 0),
        reasons={"missing_user_id": 1, "missing_item_id": 1},
        check=_check_warning("more than half"),
    ),
    Case(
        "semicolon_decimal_comma.csv",
        b"user_id;item_id;rating\nu1;i1;4,5\nu2;i2;3\n",
        counts=(2, 2),
        check=_check_verbatim("value", [4.5, 3.0]),
    ),
    Case(
        "old_epochs.csv",
        b"user_id,item_id,time_stamp,action_type\n1,2,1018,0\n1,3,-1,0\n",
        counts=(2, 2),
        check=_check_warning("--time-format"),
    ),
]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every corpus file, written once into a module folder."""
    folder = tmp_path_factory.mktemp("corpus")
    for case in CASES:
        (folder / case.name).write_bytes(case.data)
    return folder


def _check_result(case: Case, code: int, out: str, err: str) -> dict[str, Any] | None:
    assert "Traceback" not in out + err
    if case.error is not None:
        assert code == 2, (case.name, out, err)
        assert out == "" and err.startswith("behaviorlens: ") and err.count("\n") == 1
        assert case.error in err, err
        return None
    assert code == 0, (case.name, err)
    report = json.loads(out)
    assert (report["rows_read"], report["rows_accepted"]) == case.counts, report["rejected_by_reason"]
    assert report["rejected_by_reason"] == case.reasons
    assert report["rows_rejected"] == sum(case.reasons.values()) == report["rows_read"] - report["rows_accepted"]
    assert sum(report["behaviors"].values()) == report["rows_accepted"]
    for reason, examples in report["examples"].items():
        assert 1 <= len(examples) <= 5 and reason in report["rejected_by_reason"]
    return report


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_file_through_cli(case: Case, corpus_dir: Path, tmp_path: Path, cli, monkeypatch) -> None:
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "ws"
    report = _check_result(
        case, *cli("ingest", str(corpus_dir / case.name), "--json", "--workspace", str(root), *case.args)
    )
    ws = Workspace(root)
    if report is None:
        assert ws.dataset_names() == []  # an unusable file leaves nothing behind
        return
    assert ws.dataset(report["dataset"]).n_events == report["rows_accepted"]
    if case.check is not None:
        assert case.check(report, ws) is not False


SUBPROCESS_SAMPLE = [
    "truncated.csv.gz",
    "random_bytes.bin",
    "over_cap.csv",
    "broken_line.jsonl",
    "wrong_types.parquet",
    "unterminated_quote.csv",
    "latin1.csv",
    "quoted_newlines.csv",
]


def test_corpus_sample_through_the_real_entry_point(corpus_dir: Path, tmp_path: Path, cli) -> None:
    cases = [c for c in CASES if c.name in SUBPROCESS_SAMPLE]

    def run(case: Case) -> tuple[Case, tuple[int, str, str]]:
        return case, cli.subprocess(
            "ingest",
            str(corpus_dir / case.name),
            "--json",
            "--workspace",
            str(tmp_path / case.name),
            *case.args,
            env=case.env,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases))
    assert len(results) == len(SUBPROCESS_SAMPLE)
    for case, proc in results:
        _check_result(case, *proc)
