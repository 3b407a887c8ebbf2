"""The `behaviorlens` CLI: exit codes, --json keys, messages, never a traceback."""

from __future__ import annotations

import json
import os

import pytest

import core.cli.commands as commands
import core.cli.data as data_commands
from core.cli import main
from core.ingest.advice import CLI_FLAGS

GOOD = (
    "user_id,item_id,timestamp,event_type,rating\nu1,i1,1700000000,pv,\nu2,i2,1700000001,rating,4\nu2,,1700000002,pv,\n"
)
JSON_KEYS = {
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rejected_by_reason",
    "duplicates",
    "dataset",
    "users",
    "items",
    "behaviors",
    "warnings",
    "id_mode",
    "pseudonymized",
    "examples",
    "mapping",
}


def test_ingest_json_has_every_key(write_file, tmp_path, cli) -> None:
    code, out, err = cli("ingest", str(write_file("log.csv", GOOD)), "--json", "--workspace", str(tmp_path / "w"))
    assert code == 0 and err == ""
    report = json.loads(out)
    assert set(report) >= JSON_KEYS
    assert (report["rows_read"], report["rows_accepted"], report["rows_rejected"]) == (3, 2, 1)
    assert report["rejected_by_reason"] == {"missing_item_id": 1}
    assert report["behaviors"] == {"rate": 1, "view": 1} and report["dataset"] == "log"
    assert report["id_mode"] == "pseudonymized" and report["pseudonymized"] is True


def test_ingest_text_output_and_flags(write_file, tmp_path, cli) -> None:
    path = write_file("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    code, out, _ = cli(
        "ingest",
        str(path),
        "--columns",
        "user_id,item_id,value,timestamp",
        "--name",
        "ml",
        "--keep-ids",
        "--rating-range",
        "1,5",
        "--workspace",
        str(tmp_path / "w"),
    )
    assert code == 0
    assert "dataset 'ml': 2 of 2 rows accepted, 0 rejected (raw user IDs)" in out
    assert "behaviors: rate 2" in out and "warning: no behavior column" in out


def test_map_and_behavior_code_flags(write_file, tmp_path, cli) -> None:
    path = write_file("t.csv", "a,b,when,kind\n1,2,1700000000,0\n1,3,1700000000,2\n")
    code, out, _ = cli(
        "ingest",
        str(path),
        "--map",
        "user_id=a",
        "--map",
        "item_id=b",
        "--map",
        "timestamp=when",
        "--map",
        "behavior=kind",
        "--behavior-codes",
        "0=click,2=purchase",
        "--json",
        "--workspace",
        str(tmp_path / "w"),
    )
    assert code == 0 and json.loads(out)["behaviors"] == {"click": 1, "purchase": 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--map", "user_id"], "--map 'user_id': expected FIELD=COLUMN"),
        (["--map", "colour=a"], "unknown field 'colour'"),
        (["--map", "user_id=nope"], "the file has no column 'nope'"),
        (["--rating-range", "five"], "--rating-range 'five': expected LO,HI"),
        (["--rating-range", "5,1"], "expected two finite numbers LO < HI"),
        (["--behavior-codes", "zero"], "--behavior-codes: 'zero' is not of the form KEY=VALUE"),
        (["--name", "../escape"], "invalid dataset name '../escape'"),
        (["--columns", "a,b"], "--columns names 2 columns but"),
        (["--time-format", "%Q"], "is not a valid strptime format"),
        (["--default-behavior", " "], "--default-behavior is empty"),
    ],
)
def test_bad_options_exit_2_with_a_message(write_file, tmp_path, cli, argv, message) -> None:
    code, out, err = cli("ingest", str(write_file("log.csv", GOOD)), "--workspace", str(tmp_path / "w"), *argv)
    assert (code, out) == (2, "")
    assert err.startswith("behaviorlens: ") and message in err and err.count("\n") == 1


def test_unusable_file_exits_2(write_file, tmp_path, cli) -> None:
    code, out, err = cli("ingest", str(write_file("e.csv", "")), "--json", "--workspace", str(tmp_path / "w"))
    assert (code, out) == (2, "") and "e.csv is empty (0 bytes)" in err


def test_a_missing_id_column_is_worded_with_the_map_flag(write_file, tmp_path, cli) -> None:
    code, _, err = cli("ingest", str(write_file("n.csv", "who,item_id\na,i1\n")), "--workspace", str(tmp_path / "w"))
    assert code == 2 and "no user_id column found in n.csv among ['who', 'item_id']: map one with --map user_id=" in err


def test_ingest_advice_names_the_flags(write_file, tmp_path, cli) -> None:
    path = write_file("tmall.csv", "user_id,item_id,time_stamp\n1,2,1111\n1,2,1111\n3,2,1112\n")
    code, out, _ = cli("ingest", str(path), "--workspace", str(tmp_path / "w"))
    assert code == 0
    early = "3 timestamp(s) fall before 1990 (earliest read as 1970-01-01 00:18:31)"
    assert (
        f"  warning: {early}: if they are not epoch seconds, pass --time-format (e.g. %m%d or %d/%m/%Y %H:%M)\n" in out
    )
    assert "  warning: 1 exact duplicate row(s) found and kept; pass --drop-duplicates to drop them\n" in out
    assert "map one with --map behavior=COLUMN or choose another with --default-behavior\n" in out
    report = cli("ingest", str(path), "--time-format", "%m%d", "--json", "--workspace", str(tmp_path / "w")).json()
    assert any(w.endswith("check that --time-format '%m%d' includes the year (%Y)") for w in report["warnings"])
    assert len(report["notices"]) == len(report["warnings"])  # the same warnings as parts, for other front ends
    assert any({"option": "time_format", "value": "'%m%d'", "given": True} in n for n in report["notices"])
    items = write_file("items.csv", "code,title\n2,Shoe\n")
    code, _, err = cli("ingest", str(path), "--items", str(items), "--workspace", str(tmp_path / "w"))
    assert code == 2 and err.endswith("movie_id, ...) or pass --items-id COLUMN\n")


def test_every_flag_the_advice_names_is_an_ingest_flag() -> None:
    sub = next(a for a in commands._parser()._actions if a.dest == "command")
    flags = set(sub.choices["ingest"]._option_string_actions)
    assert {flag for flag, _ in CLI_FLAGS.values()} <= flags


def test_missing_and_unreadable_files_exit_2(write_file, tmp_path, cli) -> None:
    code, _, err = cli("ingest", str(tmp_path / "nope.csv"), "--workspace", str(tmp_path / "w"))
    assert code == 2 and "no such file" in err
    locked = write_file("locked.csv", GOOD)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # running as root: permissions do not apply
        pytest.skip("file permissions are not enforced for this user")
    code, _, err = cli("ingest", str(locked), "--workspace", str(tmp_path / "w"))
    assert code == 2 and "cannot be opened" in err


def test_argparse_errors_exit_2_without_traceback(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest"])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_a_bug_is_one_line_exit_3(write_file, tmp_path, cli, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(data_commands, "ingest", broken)
    code, _, err = cli("ingest", str(write_file("log.csv", GOOD)), "--workspace", str(tmp_path / "w"))
    assert code == 3 and err.count("\n") == 1 and "internal error (RuntimeError: boom)" in err
    monkeypatch.setenv(commands.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError):
        main(["ingest", str(write_file("log.csv", GOOD)), "--workspace", str(tmp_path / "w")])


def test_datasets_lists_json(write_file, tmp_path, cli) -> None:
    ws = str(tmp_path / "w")
    assert cli("datasets", "--workspace", ws)[1].strip() == "no datasets"
    cli("ingest", str(write_file("log.csv", GOOD)), "--workspace", ws)
    code, out, _ = cli("datasets", "--json", "--workspace", ws)
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == ["log"] and rows[0]["n_events"] == 2
    assert rows[0]["version"] == 1
    cli("ingest", str(write_file("log.csv", GOOD)), "--workspace", ws)  # no run depends on it: replaced
    rows = json.loads(cli("datasets", "--json", "--workspace", ws)[1])
    assert rows[0]["version"] == 2  # the version a run trained now would record
    assert "version" in cli("datasets", "--workspace", ws)[1].splitlines()[0]


def test_workspace_env_is_honoured(write_file, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(tmp_path / "envws"))
    assert cli("ingest", str(write_file("log.csv", GOOD)))[0] == 0
    assert (tmp_path / "envws" / "behaviorlens.duckdb").is_file()


def test_console_entry_point_in_a_subprocess(write_file, tmp_path, cli) -> None:
    ok = cli.subprocess("ingest", str(write_file("log.csv", GOOD)), "--json", "--workspace", str(tmp_path / "w"))
    assert ok.code == 0 and json.loads(ok.out)["rows_accepted"] == 2
    bad = cli.subprocess("ingest", str(write_file("x.bin", bytes(range(256)) * 4)), "--workspace", str(tmp_path / "w"))
    assert bad.code == 2 and "looks binary" in bad.err and "Traceback" not in bad.err
