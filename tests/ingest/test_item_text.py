"""Item text from an events file's descriptive columns (a log without an item catalogue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from core.errors import DataError
from core.ingest.item_text import _labels, _render_sql
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.store.workspace import Workspace

HEADER = "event_id,user_id,item_id,event_time,event_type,brand,category_code,category_id,price,session\n"


def _log() -> str:
    """A REES46-like log: brand, category_code, category_id and price repeat per event; event_id and session change
    on every row. Item p1's price changed (10.5 then 12.0: the latest wins); p2 has no brand."""
    rows = [
        ("u1", "p1", 1, "view", "shiseido", "appliances.kitchen.water_heater", "2053013552", "10.5", "s1"),
        ("u1", "p1", 2, "cart", "shiseido", "appliances.kitchen.water_heater", "2053013552", "12.0", "s1"),
        ("u2", "p1", 3, "view", "shiseido", "appliances.kitchen.water_heater", "2053013552", "12.0", "s2"),
        ("u2", "p2", 4, "view", "", "electronics.audio.headphone", "2053013553", "349", "s2"),
        ("u3", "p2", 5, "purchase", "", "electronics.audio.headphone", "2053013553", "349", "s3"),
        ("u3", "p3", 6, "view", "apple", "electronics.smartphone", "2053013554", "0.57", "s3"),
    ]
    for k in range(12):  # more items met twice, so "auto" can judge which columns describe items
        row = (f"u{k}", f"q{k}", 10 + k, "view", "acme", "stationery.pen", "2053013555", "3")
        rows += [(*row, f"t{k}"), (*row, f"w{k}")]
    lines = [
        f"e{n},{u},{i},{1_700_000_000 + 60 * t},{b},{br},{cc},{cid},{pr},{s}"
        for n, (u, i, t, b, br, cc, cid, pr, s) in enumerate(rows)
    ]
    return HEADER + "\n".join(lines) + "\n"


def _texts(ws: Any, name: str) -> dict[str, str]:
    items = ws.items(name)
    return dict(zip(items["item_id"], items["item_text"]))


def test_auto_reads_the_columns_that_describe_items(ws: Any, write_file: Any) -> None:
    report = ingest(ws, write_file("events.csv", _log()), None, IngestOptions(name="shop")).to_dict()
    described = report["item_text"]
    assert described["columns"] == ["brand", "category_code", "category_id", "price"]
    assert set(described["left_out"]) == {"event_id", "session"}  # they change within an item
    assert described["conflicts"] == {"brand": 0, "category_code": 0, "category_id": 0, "price": 1}
    template = "brand: {brand} · category: {category_code} · category id: {category_id} · price: {price}"
    assert described["template"] == template  # category_id's label would repeat category_code's: it keeps "id"
    texts = _texts(ws, "shop")
    assert texts["p1"] == (
        "brand: shiseido · category: appliances > kitchen > water heater · category id: 2053013552 · price: 10–20"
    )
    assert texts["p2"] == "category: electronics > audio > headphone · category id: 2053013553 · price: 300–400"
    assert texts["p3"].endswith("price: 0.5–0.6")
    assert described["items"] == len(texts) == 15


def test_named_columns_and_none(ws: Any, write_file: Any) -> None:
    path = write_file("events.csv", _log())
    report = ingest(ws, path, None, IngestOptions(name="named", item_text_columns=["category_id"])).to_dict()
    assert report["item_text"]["columns"] == ["category_id"] and report["item_text"]["left_out"] == {}
    assert _texts(ws, "named")["p2"] == "category: 2053013553"  # an ID stays one whole token
    report = ingest(ws, path, None, IngestOptions(name="plain", item_text_columns="none")).to_dict()
    assert report["item_text"]["columns"] == [] and set(_texts(ws, "plain").values()) == {""}


@pytest.mark.parametrize(
    ("columns", "message"),
    [(["colour"], "'colour' is not in the file"), (["user_id"], "'user_id' is mapped to user_id"), ("some", "'some'")],
)
def test_a_bad_column_is_a_clear_error(ws: Any, write_file: Any, columns: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ingest(ws, write_file("events.csv", _log()), None, IngestOptions(name="bad", item_text_columns=columns))
    assert "bad" not in ws.dataset_names()


def test_catalogue_text_comes_first(ws: Any, write_file: Any) -> None:
    items = write_file("items.csv", "item_id,title\np1,Water heater 3000\n")
    ingest(ws, write_file("events.csv", _log()), items, IngestOptions(name="both", item_text_columns=["brand"]))
    texts = _texts(ws, "both")
    assert texts["p1"].endswith(" · brand: shiseido") and texts["p1"].startswith("Water heater 3000")
    assert texts["p3"] == "brand: apple"


def test_cli_flag(cli: Any, write_file: Any, tmp_path: Path) -> None:
    path = write_file("events.csv", _log())
    out = cli(
        "ingest", str(path), "--name", "cli", "--item-text-columns", "brand,price", "--json", workspace=tmp_path / "w"
    )
    assert out.json()["item_text"]["columns"] == ["brand", "price"]
    shown = cli("ingest", str(path), "--name", "cli2", workspace=tmp_path / "w")
    assert shown.code == 0 and "item text from brand, category_code, category_id, price" in shown.out


RANGES = [("34.5", "30–40"), ("0.57", "0.5–0.6"), ("349", "300–400"), ("0", "0"), ("7", "7–8"), ("-3", "-3–-2")]


@pytest.mark.parametrize(("x", "text"), RANGES)
def test_numbers_read_as_ranges_of_their_magnitude(x: str, text: str) -> None:
    query = f"SELECT {_render_sql('x', 'number')} FROM (SELECT ? AS x)"
    assert duckdb.connect().execute(query, [x]).fetchall() == [(text,)]


def test_the_items_file_text_columns_are_picked_in_order(ws: Any, write_file: Any, cli: Any, tmp_path: Path) -> None:
    items = write_file("items.csv", "item_id,title,brand,description,price\np1,Kettle 3000,acme,boils fast,30\n")
    events = write_file("events.csv", "user_id,item_id,event_type\nu1,p1,view\nu2,p1,view\n")
    ingest(ws, events, items, IngestOptions(name="all"))
    assert _texts(ws, "all")["p1"] == "Kettle 3000. acme. boils fast"  # every text column, the title first
    ingest(ws, events, items, IngestOptions(name="picked", items_text_columns=["brand", "title", "price"]))
    assert _texts(ws, "picked")["p1"] == "acme. Kettle 3000. 30"
    with pytest.raises(DataError, match="items text column 'colour'.*'title', 'brand'"):
        ingest(ws, events, items, IngestOptions(name="bad", items_text_columns=["colour"]))
    out = cli(
        "ingest",
        str(events),
        "--items",
        str(items),
        "--items-text-columns",
        "description",
        "--name",
        "c",
        "--json",
        workspace=tmp_path / "w",
    )
    assert out.code == 0, out.err
    assert _texts(Workspace(tmp_path / "w"), "c")["p1"] == "boils fast"


def test_labels_drop_an_id_suffix_only_after_a_separator_or_in_camel_case() -> None:
    assert _labels(["brand_id", "category code", "sellerId", "paid", "valid"]) == [
        "brand",
        "category",
        "seller",
        "paid",
        "valid",
    ]
    assert _labels(["category_code", "category_id"]) == ["category", "category id"]
