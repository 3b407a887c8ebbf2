"""Format, compression, encoding, delimiter and header detection."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataError, UnusableFileError
from core.ingest.source import MAX_FILE_BYTES_ENV, inspect_source

CSV = "user_id,item_id,timestamp\nu1,i1,1700000000\nu2,i2,1700000001\n"


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.parametrize(("delim", "name"), [(",", "comma"), ("\t", "TAB"), (";", "semicolon"), ("|", "pipe")])
def test_delimiter_is_sniffed(write_file, delim: str, name: str) -> None:
    info = inspect_source(write_file("log.txt", CSV.replace(",", delim)))
    assert (info.format, info.delimiter, info.delimiter_name) == ("csv", delim, name)
    assert info.header and info.columns == ["user_id", "item_id", "timestamp"]


def test_comma_inside_quotes_does_not_fool_the_sniffer(write_file) -> None:
    text = 'user_id;item_id;text\nu1;i1;"a, b, c, d"\nu2;i2;"e, f"\n'
    assert inspect_source(write_file("q.csv", text)).delimiter == ";"


def test_headerless_file_gets_positional_names_and_a_warning(write_file) -> None:
    info = inspect_source(write_file("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"))
    assert not info.header and info.columns == ["column0", "column1", "column2", "column3"]
    assert any("--columns" in w for w in info.warnings)


def test_columns_option_names_headerless_columns(write_file) -> None:
    info = inspect_source(write_file("u.data", "196\t242\t3\n186\t302\t3\n"), columns=["user_id", "item_id", "value"])
    assert not info.header and info.columns == ["user_id", "item_id", "value"]


def test_columns_option_with_wrong_count_says_how_many(write_file) -> None:
    with pytest.raises(DataError, match=r"--columns names 2 columns but u.data has 3 \(TAB-delimited\)"):
        inspect_source(write_file("u.data", "196\t242\t3\n"), columns=["a", "b"])


def test_columns_option_skips_a_recognized_header(write_file) -> None:
    info = inspect_source(write_file("h.csv", CSV), columns=["a", "b", "c"])
    assert info.header and info.columns == ["a", "b", "c"]
    assert any("looked like a header" in w for w in info.warnings)


def test_utf8_bom_is_stripped(write_file) -> None:
    info = inspect_source(write_file("bom.csv", b"\xef\xbb\xbf" + CSV.encode()))
    assert info.encoding == "utf-8" and info.columns[0] == "user_id"


def test_latin1_fallback_is_a_warning(write_file) -> None:
    info = inspect_source(write_file("l1.csv", "user_id,item_id,text\nu1,i1,café\n".encode("latin-1")))
    assert info.encoding == "latin-1"
    assert any("latin-1" in w for w in info.warnings)


def test_utf16_is_refused_with_the_fix(write_file) -> None:
    with pytest.raises(UnusableFileError, match="UTF-16 encoded: save it as UTF-8"):
        inspect_source(write_file("u16.csv", CSV.encode("utf-16")))


@pytest.mark.parametrize("name", ["log.csv.gz", "log.gz", "log"])
def test_gzip_csv_is_detected_by_content(write_file, name: str) -> None:
    info = inspect_source(write_file(name, gzip.compress(CSV.encode())))
    assert (info.format, info.compression, info.delimiter) == ("csv", "gzip", ",")


def test_jsonl_and_gzip_jsonl(write_file) -> None:
    text = '{"user_id": "u1", "item_id": "i1"}\n{"user_id": "u2", "item_id": "i2", "rating": 4}\n'
    for name, data in (("a.jsonl", text.encode()), ("a.jsonl.gz", gzip.compress(text.encode()))):
        info = inspect_source(write_file(name, data))
        assert info.format == "jsonl" and info.columns == ["user_id", "item_id", "rating"]


def test_parquet_and_gzip_parquet(write_file) -> None:
    data = parquet_bytes(pa.table({"user_id": ["u1"], "item_id": [7]}))
    plain = inspect_source(write_file("a.parquet", data))
    packed = inspect_source(write_file("a.parquet.gz", gzip.compress(data)))
    assert plain.format == packed.format == "parquet"
    assert packed.compression == "gzip" and packed.read_path is not None and packed.read_path.is_file()
    assert plain.columns == packed.columns == ["user_id", "item_id"]


def test_json_array_is_refused(write_file) -> None:
    with pytest.raises(UnusableFileError, match="JSON array, not JSON lines"):
        inspect_source(write_file("a.json", '[{"user_id": "u1"}]'))


def test_binary_is_refused(write_file) -> None:
    with pytest.raises(UnusableFileError, match="looks binary"):
        inspect_source(write_file("x.bin", bytes(range(256)) * 8))


def test_empty_and_missing_files(write_file, tmp_path) -> None:
    with pytest.raises(UnusableFileError, match=r"empty \(0 bytes\)"):
        inspect_source(write_file("e.csv", b""))
    with pytest.raises(UnusableFileError, match="no such file"):
        inspect_source(tmp_path / "nope.csv")
    with pytest.raises(UnusableFileError, match="not a regular file"):
        inspect_source(tmp_path)


def test_size_cap(write_file, monkeypatch) -> None:
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, "0.00001")
    with pytest.raises(
        UnusableFileError, match=f"over the .* cap: split the file or raise the cap with {MAX_FILE_BYTES_ENV}"
    ):
        inspect_source(write_file("big.csv", CSV))


def test_bad_size_cap_setting(write_file, monkeypatch) -> None:
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, "lots")
    with pytest.raises(DataError, match="not a number of megabytes"):
        inspect_source(write_file("big.csv", CSV))


def test_duplicate_names_are_renamed_case_insensitively(write_file) -> None:
    info = inspect_source(write_file("d.csv", "user_id,item_id,Item_Id,item_id\nu1,i1,i2,i3\n"))
    assert info.columns == ["user_id", "item_id", "Item_Id_2", "item_id_3"]
    assert sum("duplicate column name" in w for w in info.warnings) == 2


def test_trailing_delimiter_on_data_rows_only(write_file) -> None:
    info = inspect_source(write_file("t.csv", "user_id,item_id\nu1,i1,\nu2,i2,\n"))
    assert info.columns == ["user_id", "item_id", "_trailing"]


def test_long_field_in_the_sniff_window(write_file) -> None:
    text = "user_id,item_id,text\nu1,i1," + "x" * 200_000 + "\nu2,i2,short\n"
    assert inspect_source(write_file("long.csv", text)).columns == ["user_id", "item_id", "text"]


def test_single_column_is_refused_with_the_delimiters_tried(write_file) -> None:
    with pytest.raises(UnusableFileError, match="single column.*comma, TAB, semicolon, pipe"):
        inspect_source(write_file("one.csv", "user_id:item_id\nu1:i1\n"))
