"""Every ingestion rule, through the Python API, against a real DuckDB workspace."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import schema as S
from core.errors import DataError, UnusableFileError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import default_name, ingest

HEADER = "user_id,item_id,timestamp,behavior,value,text\n"


def run(ws, write_file, filename, content, **options):
    return ingest(ws, write_file(filename, content), options=IngestOptions(**options))


def stored(ws, dataset, columns=S.EVENT_FIELDS):
    return ws.query(f"SELECT {', '.join(columns)} FROM events WHERE dataset = ? ORDER BY row", [dataset]).to_dict(
        "records"
    )


def assert_accounting(report) -> None:
    assert report.rows_read == report.rows_accepted + report.rows_rejected
    assert report.rows_rejected == sum(report.rejected_by_reason.values())
    assert report.rows_accepted == sum(report.behaviors.values())


# --- formats ----------------------------------------------------------------

ROWS = [("u1", "i1", "1700000000", "pv", "", ""), ("u2", "i2", "1700000060", "buy", "", "")]


def as_csv(delim: str = ",") -> bytes:
    lines = [delim.join(["user_id", "item_id", "timestamp", "behavior"])]
    lines += [delim.join(r[:4]) for r in ROWS]
    return ("\n".join(lines) + "\n").encode()


def as_jsonl() -> bytes:
    keys = ["user_id", "item_id", "timestamp", "behavior"]
    return "".join(json.dumps(dict(zip(keys, r[:4]))) + "\n" for r in ROWS).encode()


def as_parquet() -> bytes:
    buf = io.BytesIO()
    cols = list(zip(*[r[:4] for r in ROWS]))
    pq.write_table(pa.table({k: list(v) for k, v in zip(["user_id", "item_id", "timestamp", "behavior"], cols)}), buf)
    return buf.getvalue()


FORMATS = {
    "log.csv": as_csv(","),
    "log.tsv": as_csv("\t"),
    "log_semi.csv": as_csv(";"),
    "log_pipe.txt": as_csv("|"),
    "log.jsonl": as_jsonl(),
    "log.parquet": as_parquet(),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_plain_and_gzipped_gives_the_same_events(ws, write_file, name: str, gz: bool) -> None:
    data = gzip.compress(FORMATS[name]) if gz else FORMATS[name]
    report = run(ws, write_file, name + (".gz" if gz else ""), data, name="d", keep_ids=True)
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (2, 2, 0)
    assert report.compression == ("gzip" if gz else None)
    events = stored(ws, "d")
    assert [(e["user_id"], e["item_id"], e["behavior"]) for e in events] == [
        ("u1", "i1", "view"),
        ("u2", "i2", "purchase"),
    ]
    assert events[1]["timestamp"] == datetime(2023, 11, 14, 22, 14, 20)


def test_decimal_comma_with_semicolons(ws, write_file) -> None:
    report = run(ws, write_file, "r.csv", "user_id;item_id;rating\nu1;i1;4,5\nu2;i2;3\n", name="d")
    assert report.delimiter == ";" and report.rows_accepted == 2
    assert [e["value"] for e in stored(ws, "d")] == [4.5, 3.0]


def test_headerless_file_with_columns(ws, write_file) -> None:
    report = run(
        ws,
        write_file,
        "u.data",
        "196\t242\t3\t881250949\n186\t302\t1\t891717742\n",
        columns=["user_id", "item_id", "value", "timestamp"],
        name="ml",
        keep_ids=True,
    )
    assert not report.header and report.rows_accepted == 2
    assert stored(ws, "ml", (S.USER_ID, S.ITEM_ID, S.VALUE, S.BEHAVIOR))[0] == {
        S.USER_ID: "196",
        S.ITEM_ID: "242",
        S.VALUE: 3.0,
        S.BEHAVIOR: S.RATE,
    }


# --- encoding ---------------------------------------------------------------


def test_bom_and_latin1(ws, write_file) -> None:
    bom = run(ws, write_file, "bom.csv", "\ufeffuser_id,item_id,text\nu1,i1,café\n", name="bom")
    assert bom.mapping[S.USER_ID] == "user_id" and bom.encoding == "utf-8"
    assert not any("latin-1" in w for w in bom.warnings)
    latin = run(ws, write_file, "l1.csv", "user_id,item_id,text\nu1,i1,café crème\n".encode("latin-1"), name="l1")
    assert latin.encoding == "latin-1" and any("latin-1" in w for w in latin.warnings)
    assert stored(ws, "l1")[0][S.TEXT] == "café crème"


def test_latin1_bytes_after_the_sniff_window_switch_the_encoding(ws, write_file) -> None:
    head = "user_id,item_id,text\n" + "u1,i1,plain ascii text\n" * 20_000
    report = run(ws, write_file, "late.csv", head.encode() + "u2,i2,naïve\n".encode("latin-1"), name="late")
    assert report.encoding == "latin-1" and report.rows_accepted == 20_001 and report.rows_rejected == 0


# --- mapping ----------------------------------------------------------------


def test_mapping_is_guessed_and_can_be_overridden(ws, write_file) -> None:
    text = "visitorid,itemid,event,timestamp,other_user\nv1,i1,addtocart,1433221332117,o1\n"
    guessed = run(ws, write_file, "rr.csv", text, name="rr", keep_ids=True)
    assert guessed.mapping == {
        S.USER_ID: "visitorid",
        S.ITEM_ID: "itemid",
        S.TIMESTAMP: "timestamp",
        S.BEHAVIOR: "event",
    }
    assert stored(ws, "rr")[0][S.BEHAVIOR] == S.CART
    override = run(ws, write_file, "rr.csv", text, name="rr2", keep_ids=True, mapping={S.USER_ID: "other_user"})
    assert override.mapping[S.USER_ID] == "other_user" and stored(ws, "rr2")[0][S.USER_ID] == "o1"


# --- timestamps -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "1700000000",
        "1700000000000",
        "1700000000000000",
        "1700000000000000000",
        "1700000000.0",
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20",
        "2023-11-15T00:13:20+02:00",
        "2023-11-14 22:13:20 UTC",
        "2023-11-14 22:13:20",
        " 2023-11-14T22:13:20.000Z ",
    ],
)
def test_timestamp_forms_all_read_as_the_same_utc_instant(ws, write_file, raw: str) -> None:
    report = run(ws, write_file, "t.csv", f"user_id,item_id,timestamp\nu1,i1,{raw}\n", name="t")
    assert report.rows_accepted == 1, report.rejected_by_reason
    assert stored(ws, "t")[0][S.TIMESTAMP] == datetime(2023, 11, 14, 22, 13, 20)


def test_time_format_option(ws, write_file) -> None:
    report = run(
        ws,
        write_file,
        "t.csv",
        "user_id,item_id,timestamp\nu1,i1,14/11/2023 22:13\nu1,i2,junk\n",
        name="t",
        time_format="%d/%m/%Y %H:%M",
    )
    assert report.rows_accepted == 1 and report.rejected_by_reason == {S.R_BAD_TIME: 1}
    assert stored(ws, "t")[0][S.TIMESTAMP] == datetime(2023, 11, 14, 22, 13)


def test_invalid_time_format_is_a_data_error(ws, write_file) -> None:
    with pytest.raises(DataError, match="--time-format '%Q' is not a valid strptime format"):
        run(ws, write_file, "t.csv", "user_id,item_id,timestamp\nu1,i1,1\n", time_format="%Q")


def test_old_epochs_are_flagged(ws, write_file) -> None:
    report = run(ws, write_file, "tmall.csv", "user_id,item_id,time_stamp\n1,2,1018\n", name="t")
    assert report.rows_accepted == 1 and any("--time-format" in w for w in report.warnings)


def test_no_timestamp_column_uses_file_order(ws, write_file) -> None:
    report = run(ws, write_file, "n.csv", "user_id,item_id\nu1,i1\nu1,i2\n", name="n")
    assert any("no timestamp column" in w for w in report.warnings)
    assert [e[S.TIMESTAMP] for e in stored(ws, "n")] == [datetime(1970, 1, 1, 0, 0, 1), datetime(1970, 1, 1, 0, 0, 2)]


# --- behaviors --------------------------------------------------------------


def test_behavior_synonyms_and_custom_labels(ws, write_file) -> None:
    labels = ["pv", "fav", "buy", "addtocart", "Add To Cart", "click", "teleport", "teleport"]
    text = "user_id,item_id,behavior\n" + "".join(f"u1,i{k},{b}\n" for k, b in enumerate(labels))
    report = run(ws, write_file, "b.csv", text, name="b")
    assert report.behaviors == {S.CART: 2, "teleport": 2, S.CLICK: 1, S.FAVORITE: 1, S.PURCHASE: 1, S.VIEW: 1}
    assert report.custom_behaviors == ["teleport"] and report.rows_rejected == 0
    assert any("custom behavior" in w and "'teleport' (2 rows)" in w for w in report.warnings)


def test_numeric_codes(ws, write_file) -> None:
    text = "user_id,item_id,action_type\n1,2,0\n1,3,2\n1,4,9\n"
    plain = run(ws, write_file, "c.csv", text, name="c")
    assert any("numeric codes" in w for w in plain.warnings)
    coded = run(ws, write_file, "c.csv", text, name="c2", behavior_codes="0=click,1=cart,2=purchase,3=favorite")
    assert coded.behaviors == {S.CLICK: 1, S.PURCHASE: 1, "9": 1}


def test_no_behavior_column_counts_one_default_behavior(ws, write_file) -> None:
    report = run(ws, write_file, "n.csv", "user_id,item_id\nu1,i1\nu2,i2\n", name="n")
    assert report.behaviors == {S.VIEW: 2}
    assert any("no behavior column" in w for w in report.warnings)
    rated = run(ws, write_file, "r.csv", "user_id,item_id,rating\nu1,i1,4\n", name="r")
    assert rated.behaviors == {S.RATE: 1}
    chosen = run(ws, write_file, "n.csv", "user_id,item_id\nu1,i1\n", name="n2", default_behavior="buy")
    assert chosen.behaviors == {S.PURCHASE: 1}


def test_many_distinct_labels_take_the_join_path(ws, write_file) -> None:
    text = "user_id,item_id,event\n" + "".join(f"u1,i1,kind{k}\n" for k in range(100)) + "u1,i1,pv\nu1,i1,\n"
    report = run(ws, write_file, "many.csv", text, name="m")
    assert report.rows_accepted == 101 and report.behaviors[S.VIEW] == 1
    assert report.rejected_by_reason == {S.R_MISSING_BEHAVIOR: 1}


# --- IDs --------------------------------------------------------------------


def test_ids_are_strings(ws, write_file) -> None:
    report = run(ws, write_file, "ids.csv", "user_id,item_id\n007,01\n07,1\n7,1.0\n", name="ids", keep_ids=True)
    assert report.users == 3 and report.items == 3
    assert [(e[S.USER_ID], e[S.ITEM_ID]) for e in stored(ws, "ids")] == [("007", "01"), ("07", "1"), ("7", "1.0")]


def test_numeric_parquet_and_json_ids_become_plain_strings(ws, write_file) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"user_id": pa.array([7.0, 8.0]), "item_id": pa.array([10, 11], pa.int64())}), buf)
    run(ws, write_file, "p.parquet", buf.getvalue(), name="p", keep_ids=True)
    assert [(e[S.USER_ID], e[S.ITEM_ID]) for e in stored(ws, "p")] == [("7", "10"), ("8", "11")]
    run(ws, write_file, "j.jsonl", '{"user_id": "007", "item_id": 5}\n', name="j", keep_ids=True)
    assert (stored(ws, "j")[0][S.USER_ID], stored(ws, "j")[0][S.ITEM_ID]) == ("007", "5")


# --- item catalogue ---------------------------------------------------------


def test_item_catalogue_text_columns_are_joined(ws, write_file) -> None:
    events = write_file("e.csv", "user_id,item_id\nu1,i1\nu1,i2\nu1,i3\n")
    items = write_file(
        "items.csv",
        "item_id,description,title,brand,price\n"
        "i1,Soft cotton,Blue shirt,Acme,19.5\ni2,,Red hat,,7\ni2,dupe,dupe,,1\n,x,y,,2\n",
    )
    report = ingest(ws, events, items, IngestOptions(name="cat"))
    rows = {r[S.ITEM_ID]: r for r in ws.items("cat").to_dict("records")}
    assert rows["i1"][S.ITEM_TEXT] == "Blue shirt. Acme. Soft cotton"
    assert rows["i1"][S.ITEM_TITLE] == "Blue shirt" and json.loads(rows["i1"][S.ITEM_ATTRS]) == {"price": 19.5}
    assert rows["i2"][S.ITEM_TEXT] == "Red hat" and rows["i3"][S.ITEM_TEXT] == ""
    assert report.items_file["rows_read"] == 4 and report.items_file["rows_accepted"] == 2
    assert report.items_file["rejected_by_reason"] == {S.R_MISSING_ITEM: 1, "duplicate_item_id": 1}
    assert any("no text in the items file" in w for w in report.warnings)
    assert report.sources == ["e.csv", "items.csv"]


def test_item_catalogue_without_id_column_is_unusable(ws, write_file) -> None:
    events = write_file("e.csv", "user_id,item_id\nu1,i1\n")
    items = write_file("items.csv", "name,description\nshirt,blue\n")
    with pytest.raises(UnusableFileError, match="items file items.csv has no item ID column.*--items-id"):
        ingest(ws, events, items, IngestOptions(name="cat"))


# --- validation and accounting ----------------------------------------------

BAD_ROWS = (
    HEADER
    + "u1,i1,1700000000,view,,\n"  # 1 ok
    + ",i1,1700000000,view,,\n"  # 2 missing user
    + "NaN,i1,1700000000,view,,\n"  # 3 missing user (null token)
    + "u1,,1700000000,view,,\n"  # 4 missing item
    + "u1,null,1700000000,view,,\n"  # 5 missing item
    + f"{'u' * 300},i1,1700000000,view,,\n"  # 6 id too long
    + "u1,i1,,view,,\n"  # 7 missing timestamp
    + "u1,i1,yesterday,view,,\n"  # 8 bad timestamp
    + "u1,i1,1700000000,rate,abc,\n"  # 9 non-numeric value
    + "u1,i1,1700000000,rate,,\n"  # 10 missing rating
    + "u1,i1,1700000000,rate,6,\n"  # 11 out of range
    + "u1,i1,1700000000,review,-1,\n"  # 12 out of range
    + "u1,i1,1700000000,,,\n"  # 13 missing behavior
    + "u1,i1,1700000000,rate,4.5,great\n"  # 14 ok
    + "u1,i1,1700000000,view,inf,\n"  # 15 non-numeric (not finite)
    + "u1,i1,1700000000,view\n"  # 16 malformed (too few fields)
)


def test_every_rejection_reason_is_counted_with_examples(ws, write_file) -> None:
    report = run(ws, write_file, "bad.csv", BAD_ROWS, name="bad")
    assert report.rejected_by_reason == {
        S.R_MISSING_USER: 2,
        S.R_MISSING_ITEM: 2,
        S.R_ID_TOO_LONG: 1,
        S.R_MISSING_TIME: 1,
        S.R_BAD_TIME: 1,
        S.R_BAD_VALUE: 2,
        S.R_MISSING_RATING: 1,
        S.R_RATING_RANGE: 2,
        S.R_MISSING_BEHAVIOR: 1,
        S.R_MALFORMED: 1,
    }
    assert (report.rows_read, report.rows_accepted, report.rows_rejected) == (16, 2, 14)
    assert_accounting(report)
    assert [e["row"] for e in report.examples[S.R_MISSING_USER]] == [2, 3]
    assert report.examples[S.R_BAD_TIME][0][S.TIMESTAMP] == "yesterday"
    assert report.examples[S.R_BAD_VALUE][0][S.VALUE] == "abc"
    assert (
        report.examples[S.R_MALFORMED][0]["line"] == 17
        and "wrong number of fields" in report.examples[S.R_MALFORMED][0]["error"]
    )
    assert report.examples[S.R_ID_TOO_LONG][0][S.USER_ID].startswith("u_")  # pseudonym, not the raw ID


def test_at_most_five_examples_per_reason(ws, write_file) -> None:
    report = run(ws, write_file, "m.csv", "user_id,item_id\n" + "u1,\n" * 12 + "u1,i1\n", name="m")
    assert report.rejected_by_reason == {S.R_MISSING_ITEM: 12}
    assert [e["row"] for e in report.examples[S.R_MISSING_ITEM]] == [1, 2, 3, 4, 5]


def test_rating_range_option(ws, write_file) -> None:
    text = "user_id,item_id,rating\nu1,i1,0\nu1,i2,10\nu1,i3,11\n"
    assert run(ws, write_file, "r.csv", text, name="r").rejected_by_reason == {S.R_RATING_RANGE: 2}
    wide = run(ws, write_file, "r.csv", text, name="r2", rating_range=(0, 10))
    assert wide.rejected_by_reason == {S.R_RATING_RANGE: 1}
    with pytest.raises(DataError, match="LO < HI"):
        run(ws, write_file, "r.csv", text, rating_range=(5, 1))


def test_duplicates_are_counted_and_optionally_dropped(ws, write_file) -> None:
    text = "user_id,item_id,timestamp\nu1,i1,1\nu1,i1,1\nu1,i1,1\nu2,i1,1\nu1,i1,2\n"
    kept = run(ws, write_file, "d.csv", text, name="d")
    assert kept.duplicates == 2 and kept.rows_accepted == 5
    assert kept.duplicate_examples[0]["copies"] == 3 and kept.duplicate_examples[0]["first_row"] == 1
    dropped = run(ws, write_file, "d.csv", text, name="d2", drop_duplicates=True)
    assert dropped.duplicates == 2 and dropped.rows_accepted == 3
    assert dropped.rejected_by_reason == {S.R_DUPLICATE: 2}
    assert [e["row"] for e in dropped.examples[S.R_DUPLICATE]] == [2, 3]
    assert_accounting(dropped)


def test_malformed_jsonl_lines_are_counted(ws, write_file) -> None:
    text = '{"user_id":"u1","item_id":"i1"}\n{"user_id":"u2",\n\n[1,2]\n{"user_id":"u3","item_id":"i3"}\n'
    report = run(ws, write_file, "j.jsonl", text, name="j")
    assert (report.rows_read, report.rows_accepted, report.rejected_by_reason) == (4, 2, {S.R_MALFORMED: 2})
    assert report.examples[S.R_MALFORMED] == [
        {"line": 2, "error": "not a JSON object"},
        {"line": 3, "error": "not a JSON object"},
    ]


# --- unusable files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty (0 bytes)"),
        ("user_id,item_id\n", "has no data rows"),
        ("item_id,timestamp\ni1,1\n", "no user_id column found in f.csv among ['item_id', 'timestamp']"),
        ("user_id,timestamp\nu1,1\n", "no item_id column found"),
        ("1,2\n3,4\n", "no user_id column found"),  # each front end words the fix (tests/cli, tests/app)
        (b"\x00\x01\x02\x03" * 100, "looks binary"),
    ],
)
def test_unusable_files_raise_one_clear_error(ws, write_file, content, message) -> None:
    with pytest.raises(UnusableFileError) as err:
        run(ws, write_file, "f.csv", content)
    assert message in str(err.value)
    assert ws.list_datasets().empty


# --- storage ----------------------------------------------------------------


def test_pseudonyms_are_hmac_of_the_raw_id(ws, write_file) -> None:
    report = run(ws, write_file, "p.csv", "user_id,item_id\nalice,i1\n", name="p")
    key = ws.secret_key()
    expected = "u_" + hmac.new(key, b"alice", hashlib.sha256).hexdigest()[:16]
    assert report.id_mode == "pseudonymized" and stored(ws, "p")[0][S.USER_ID] == expected
    assert ws.resolve_user("p", "alice") == expected
    raw = run(ws, write_file, "p.csv", "user_id,item_id\nalice,i1\n", name="r", keep_ids=True)
    assert raw.id_mode == "raw" and stored(ws, "r")[0][S.USER_ID] == "alice"


def test_reingest_replaces_the_dataset(ws, write_file) -> None:
    first = run(ws, write_file, "a.csv", "user_id,item_id\nu1,i1\nu2,i2\n", name="a")
    second = run(ws, write_file, "a.csv", "user_id,item_id\nu1,i1\n", name="a")
    assert not first.replaced and second.replaced
    assert ws.dataset("a").n_events == 1 and len(stored(ws, "a")) == 1


def test_rejected_rows_never_reach_the_workspace(ws, write_file) -> None:
    run(ws, write_file, "bad.csv", BAD_ROWS, name="bad", keep_ids=True)
    assert len(stored(ws, "bad")) == 2


def test_default_name() -> None:
    assert default_name("/x/My Events.csv.gz") == "My_Events"
    assert default_name("u.data") == "u"
    assert default_name("...csv") == "dataset"


def test_progress_callback_reaches_done(ws, write_file) -> None:
    stages: list[tuple[str, float]] = []
    ingest(
        ws, write_file("p.csv", "user_id,item_id\nu1,i1\n"), progress=lambda e: stages.append((e["stage"], e["done"]))
    )
    assert stages[0][0] == "reading" and stages[-1] == ("done", 1.0)


def test_column_names_that_match_internal_names_are_harmless(ws, write_file) -> None:
    events = write_file("odd.csv", "i,u,rowid,t,ts_raw\nuser1,item1,9,x,y\nuser2,item2,8,x,y\n")
    items = write_file("odd_items.csv", "item_id,rowid,__row,title\nitem1,5,6,First\n")
    report = ingest(
        ws,
        events,
        items,
        IngestOptions(name="odd", keep_ids=True, mapping={S.USER_ID: "i", S.ITEM_ID: "u", S.TEXT: "t"}),
    )
    assert report.rows_accepted == 2 and report.items_file["rows_accepted"] == 1
    assert [(e[S.USER_ID], e[S.ITEM_ID]) for e in stored(ws, "odd")] == [("user1", "item1"), ("user2", "item2")]
    assert ws.items("odd").set_index(S.ITEM_ID).loc["item1", S.ITEM_TEXT] == "First"


def test_labels_first_seen_after_the_sample_are_still_mapped(ws, write_file) -> None:
    text = (
        "user_id,item_id,event,rating\n"
        + "u1,i1,pv,\n" * 25_000
        + "u2,i2,buy,\nu3,i3,teleport,\nu4,i4,rating,9\nu5,i5, ,\n"
    )
    report = run(ws, write_file, "late.csv", text, name="late")
    assert report.behaviors == {S.VIEW: 25_000, S.PURCHASE: 1, "teleport": 1}
    assert report.rejected_by_reason == {S.R_RATING_RANGE: 1, S.R_MISSING_BEHAVIOR: 1}
    assert_accounting(report)


def test_time_format_retries_numbers_that_lost_a_leading_zero(ws, write_file) -> None:
    report = run(
        ws,
        write_file,
        "tmall.csv",
        "user_id,item_id,time_stamp\n1,2,511\n1,3,1018\n1,4,1340\n",
        name="t",
        time_format="%m%d",
    )
    assert report.rows_accepted == 2 and report.rejected_by_reason == {S.R_BAD_TIME: 1}
    assert [e[S.TIMESTAMP] for e in stored(ws, "t")] == [datetime(1900, 5, 11), datetime(1900, 10, 18)]
    assert any("includes the year" in w for w in report.warnings)
