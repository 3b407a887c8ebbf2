"""Advice naming an ingest option: the CLI wording as the text, the parts kept for other front ends."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from core.errors import DataError, UnusableFileError
from core.ingest.advice import CLI_FLAGS, Hint, Notice, cli_words, notice_from_json, notices_of
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest


def angle(hint: Hint) -> str:
    """A made-up front end's words: the option name in angle brackets."""
    return f"<{hint.option}{'=' + hint.value if hint.value else ''}>"


def test_a_notice_reads_as_its_cli_wording_and_keeps_its_parts() -> None:
    notice = Notice("if they are not epoch seconds, ", Hint("time_format", act=True), " (e.g. %m%d)")
    assert notice == "if they are not epoch seconds, pass --time-format (e.g. %m%d)"
    assert notice.words(angle) == "if they are not epoch seconds, <time_format> (e.g. %m%d)"
    for twin in (copy.deepcopy(notice), pickle.loads(pickle.dumps(notice)), notice_from_json(notice.to_json())):
        assert type(twin) is Notice and twin == notice and twin.parts == notice.parts
    error = pickle.loads(pickle.dumps(DataError(notice)))
    assert str(error) == str(notice) and error.args[0].parts == notice.parts


def test_cli_words_keep_the_flags_as_they_were() -> None:
    assert cli_words(Hint("mapping", field="behavior")) == "--map behavior=COLUMN"
    assert cli_words(Hint("items_id_column", act=True)) == "pass --items-id COLUMN"
    assert cli_words(Hint("time_format", value="'%m%d'", given=True)) == "--time-format '%m%d'"
    assert cli_words(Hint("behavior_codes", value="0=click")) == "--behavior-codes 0=click"
    with pytest.raises(ValueError, match="no ingest option 'rating'"):
        Hint("rating")
    assert all(flag.startswith("--") for flag, _ in CLI_FLAGS.values())


@pytest.mark.parametrize(
    "parts",
    ["text", [{"option": "colour"}], [{"value": "x"}], [{"option": "columns", "value": 3}], [7]],
)
def test_stored_parts_that_are_not_a_notice_read_as_none(parts: object) -> None:
    assert notice_from_json(parts) is None


def test_the_report_keeps_every_warning_as_parts(ws, write_file) -> None:
    log = write_file("tmall.csv", "user_id,item_id,time_stamp\n1,2,1111\n1,2,1111\n")
    report = ingest(ws, log).to_dict()
    warnings, notices = report["warnings"], report["notices"]
    assert len(notices) == len(warnings) and json.loads(json.dumps(report))["notices"] == notices
    assert [notice_from_json(n) for n in notices] == warnings  # the CLI wording, rebuilt from the parts
    early = next(n for n in notices if "fall before 1990" in n[0])
    assert {"option": "time_format", "act": True} in early
    assert any({"option": "drop_duplicates", "act": True} in n for n in notices)
    assert any({"option": "mapping", "field": "behavior"} in n for n in notices)
    assert notices_of(["plain text"]) == [["plain text"]]


def test_errors_carry_the_option_they_name(ws, write_file) -> None:
    log = write_file("t.csv", "user_id,item_id,timestamp\nu1,i1,1\n")
    with pytest.raises(DataError) as bad_format:
        ingest(ws, log, options=IngestOptions(time_format="%Q"))
    assert bad_format.value.args[0].words(angle).startswith("<time_format='%Q'> is not a valid strptime format")
    with pytest.raises(DataError) as bad_names:
        ingest(ws, log, options=IngestOptions(columns=["a", "b"]))
    assert bad_names.value.args[0].words(angle).startswith("<columns> names 2 columns but t.csv has 3")
    items = write_file("items.csv", "code,title\ni1,Shoe\n")
    with pytest.raises(UnusableFileError) as no_id:
        ingest(ws, log, items)
    assert no_id.value.args[0].words(angle).endswith("movie_id, ...) or <items_id_column>")
