"""The Data page: sample charts, upload -> mapping -> ingest -> report, inert user text.

Uploads go through the page's real ``st.file_uploader`` widgets: AppTest's
``FileUploader.set_value`` registers the bytes with the test runtime's upload
manager and sends the same widget state a browser upload does, so the page
receives a genuine ``UploadedFile``, saves it to a temp file and ingests it.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from page_support import charts, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.ingest.advice import CLI_FLAGS
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.store import audit
from core.store.workspace import Workspace
from pages._advice import DROP_DUPLICATES, ITEMS_ID, PAGE_WORDS, TIME_FORMAT
from pages._ingest_form import ITEM_TEXT, ITEMS_TEXT

DATA_PAGE = "pages/data.py"
EVIL = "<script>alert(1)</script>"
EVIL_LINK = "[click me](https://evil.example/x.png)"
EVIL_BARE = "see www.evil.example or mail me@evil.example"  # GFM would autolink both

# 8 rows: 3 accepted, one rejected for each of 5 reasons (hand-checked in the comments).
TINY = b"""user_id,item_id,timestamp,behavior,value
u1,i1,2024-01-01T00:00:00Z,view,
u1,i2,2024-01-01T00:01:00Z,cart,
u2,i1,2024-01-02T00:00:00Z,purchase,
,i1,2024-01-02T00:00:00Z,view,
u3,,2024-01-02T00:00:00Z,view,
u3,i2,not-a-time,view,
u3,i2,2024-01-03T00:00:00Z,rate,9
u3,i2,2024-01-03T00:00:00Z,rate,abc
"""
TINY_REASONS = {  # rows 4..8 of the file, in order
    "missing_user_id": 1,
    "missing_item_id": 1,
    "bad_timestamp": 1,
    "rating_out_of_range": 1,
    "non_numeric_value": 1,
}


@pytest.fixture()
def page(open_app) -> AppTest:
    """The Data page, reached through app.py, with every Streamlit cache cleared around it."""
    return open_app(page=DATA_PAGE, timeout=60)


def metrics(at: AppTest) -> dict[str, str]:
    """First value shown for each metric label (the last ingest's report comes first)."""
    out: dict[str, str] = {}
    for m in at.metric:
        out.setdefault(m.label, m.value)
    return out


def upload_and_ingest(
    at: AppTest,
    events: tuple[str, bytes],
    items: tuple[str, bytes] | None = None,
    name: str | None = None,
    **fields: str,
) -> AppTest:
    """Upload through the page's uploaders, adjust the form, press Ingest."""
    at.file_uploader(key="events_upload").set_value((events[0], events[1], "text/csv"))
    if items is not None:
        at.file_uploader(key="items_upload").set_value((items[0], items[1], "text/csv"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text[0].value.startswith("format: csv")
    for box in at.selectbox:
        if box.label in fields:
            box.set_value(fields.pop(box.label))
    for text in at.text_input:
        if text.label == "Dataset name" and name is not None:
            text.set_value(name)
        if text.label.startswith("Behavior codes") and "codes" in fields:
            text.set_value(fields.pop("codes"))
    assert not fields, f"no such form field: {fields}"
    next(b for b in at.button if b.label == "Ingest").click()
    return at.run()


def fill_form(at: AppTest, **by_label: object) -> AppTest:
    """Set the form's widgets by label (text boxes, check boxes, select boxes), press Ingest and run."""
    widgets = [*at.text_input, *at.checkbox, *at.selectbox]
    for label, value in by_label.items():
        next(w for w in widgets if w.label == label).set_value(value)
    next(b for b in at.button if b.label == "Ingest").click()
    return at.run()


def shown(at: AppTest, kind: str) -> list[str]:
    """The text of every warning or error (``kind``) on the page, as the reader sees it."""
    return [unescape(e.value) for e in at.get(kind)]


def no_flag(messages: list[str]) -> list[str]:
    """``messages``, after asserting that none names a CLI flag (``--time-format``, ``--map``, ...)."""
    assert not [m for m in messages if re.search(r"--[a-z]", m)], messages
    return messages


def test_the_page_words_every_option_the_advice_can_name() -> None:
    assert set(PAGE_WORDS) == set(CLI_FLAGS)  # a new option the advice names needs its box on the page


def test_a_time_format_is_advised_in_page_terms_and_set_in_the_form(
    page: AppTest, _isolated_workspace_env: Path
) -> None:
    tmall = b"user_id,item_id,time_stamp,behavior\nu1,i1,1111,view\nu1,i2,1111,cart\nu2,i1,1112,purchase\n"
    at = page.file_uploader(key="events_upload").set_value(("tmall.csv", tmall, "text/csv")).run()
    at = fill_form(no_errors(at))
    advice = [w for w in no_flag(shown(no_errors(at), "warning")) if "fall before 1990" in w]
    assert advice and all(
        w.endswith(
            "if they are not epoch seconds, fill in the Time format box under More options "
            "(e.g. %m%d or %d/%m/%Y %H:%M)"
        )
        for w in advice  # the last ingest's report, and the stored one in the overview
    ), advice
    at = fill_form(at, **{TIME_FORMAT: "%Q"})  # not a strptime format: an error naming the box, no flag
    assert no_flag(shown(at, "error"))[0].startswith("the Time format box under More options (now '%Q') is not a")
    at = fill_form(at, **{TIME_FORMAT: "%m%d"})
    no_errors(at)
    stored = Workspace(_isolated_workspace_env).dataset("tmall")
    assert stored.report["time_range"] == ["1900-11-11T00:00:00Z", "1900-11-12T00:00:00Z"]
    assert stored.report["rows_accepted"] == 3
    assert "check that the Time format box under More options (now '%m%d') includes the year (%Y)" in " ".join(
        no_flag(shown(at, "warning"))
    )


def test_duplicates_are_advised_in_page_terms_and_dropped_by_the_box(
    page: AppTest, _isolated_workspace_env: Path
) -> None:
    log = b"user_id,item_id,timestamp,behavior\n" + b"u1,i1,2024-01-01,view\n" * 3 + b"u2,i1,2024-01-02,view\n"
    at = page.file_uploader(key="events_upload").set_value(("dupes.csv", log, "text/csv")).run()
    warnings = no_flag(shown(fill_form(at), "warning"))
    kept = "2 exact duplicate row(s) found and kept; tick the Drop exact duplicates box under More options to drop them"
    assert kept in warnings
    at = fill_form(at, **{DROP_DUPLICATES: True})
    report = Workspace(_isolated_workspace_env).dataset("dupes").report
    assert report["rejected_by_reason"] == {"duplicate": 2} and report["rows_accepted"] == 2
    assert "2 exact duplicate row(s) found and dropped (reason 'duplicate')" in no_flag(shown(no_errors(at), "warning"))


def test_a_headerless_file_gets_its_column_names_on_the_page(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = page.file_uploader(key="events_upload").set_value(("u.tsv", b"7\t10\t3\n8\t20\t5\n", "text/csv")).run()
    at = next(t for t in at.text_input if t.label == "Column names").set_value("user_id,item_id,rating").run()
    picked = {b.label: b.value for b in at.selectbox if b.label in ("user_id", "item_id", "value")}
    assert picked == {"user_id": "user_id", "item_id": "item_id", "value": "rating"} and not at.warning
    at = fill_form(at)
    stored = Workspace(_isolated_workspace_env).dataset("u")
    assert stored.mapping == {"user_id": "user_id", "item_id": "item_id", "value": "rating"}
    assert stored.report["behaviors"] == {"rate": 2}
    assert any("choose another with the Default behavior box under More options" in w for w in shown(at, "warning"))


def test_the_items_id_column_is_picked_in_the_form(page: AppTest, _isolated_workspace_env: Path) -> None:
    events = b"user_id,item_id,behavior\nu1,i1,view\nu2,i2,view\n"
    items = b"code,title\ni1,Red shoe\ni2,Blue hat\n"
    page.file_uploader(key="events_upload").set_value(("shop.csv", events, "text/csv"))
    at = page.file_uploader(key="items_upload").set_value(("catalogue.csv", items, "text/csv")).run()
    errors = no_flag(shown(fill_form(at), "error"))  # no item ID column guessed in the items file
    assert errors == [
        "items file catalogue.csv has no item ID column among ['code', 'title']: name one item_id "
        "(or product_id, asin, movie_id, ...) or pick the column in the Items ID column box under More options"
    ]
    at = fill_form(at, **{ITEMS_ID: "code"})
    stored = Workspace(_isolated_workspace_env).dataset("shop")
    assert stored.report["items_file"]["rows_accepted"] == 2
    assert set(Workspace(_isolated_workspace_env).items("shop")["title"]) == {"Red shoe", "Blue hat"}


def test_stored_reports_show_advice_in_page_terms_and_old_ones_as_stored(
    page: AppTest, _isolated_workspace_env: Path, tmp_path: Path
) -> None:
    ws = Workspace(_isolated_workspace_env)
    log = tmp_path / "plain.csv"
    log.write_text("user,item\nu1,i1\nu2,i1\n")
    ingest(ws, log, options=IngestOptions(name="plain"))
    page.run()
    at = page.sidebar.selectbox[0].set_value("plain").run()
    assert (
        "no behavior column: every row was counted as 'view'; map one with the behavior box of the Column mapping "
        "form or choose another with the Default behavior box under More options" in no_flag(shown(at, "warning"))
    )
    with ws.connect() as con:  # a report stored before the notices: its warnings as they were worded
        report = json.loads(con.execute("SELECT report FROM datasets WHERE name = 'plain'").fetchone()[0])
        del report["notices"]
        con.execute("UPDATE datasets SET report = ? WHERE name = 'plain'", [json.dumps(report)])
    old = shown(at.run(), "warning")
    cli = "map one with --map behavior=COLUMN or choose another with --default-behavior"
    assert f"no behavior column: every row was counted as 'view'; {cli}" in old


def test_data_page_renders_the_sample_charts(page: AppTest) -> None:
    assert not page.exception and not page.error
    assert page.sidebar.selectbox[0].value == "sample"
    specs = charts(page)
    assert set(specs) == {
        "Users per behavior",  # more sample users cart than favorite: not a funnel
        "Next behavior (within a user)",
        "Events per day",
        "Events per user",
        "Events per item",
        "Top items by events",
    }
    shares = specs["Users per behavior"]["data"][0]
    assert shares["type"] == "bar"
    assert shares["y"] == ["view", "click", "favorite", "cart", "purchase", "rate", "review", "share"]
    assert specs["Events per user"]["layout"]["yaxis"]["type"] == "log"
    assert specs["Next behavior (within a user)"]["data"][0]["type"] == "heatmap"
    assert "Rows read" in metrics(page)  # the stored report of the selected dataset


def test_upload_reports_rows_by_reason(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = upload_and_ingest(page, ("tiny log.csv", TINY), name="tiny")
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = metrics(at)
    assert (shown["Rows read"], shown["Rows accepted"], shown["Rows rejected"]) == ("8", "3", "5")
    texts = [t.value for t in at.text]
    assert "Accounting: 8 rows read = 3 accepted + 5 rejected (balanced)" in texts
    reasons = next(d.value for d in at.dataframe if list(d.value.columns) == ["reason", "rows"])
    assert dict(zip(reasons["reason"], reasons["rows"])) == TINY_REASONS
    for reason in TINY_REASONS:
        assert f"Examples: {reason}" in texts
    assert at.sidebar.selectbox[0].value == "tiny"  # the new dataset is selected
    stored = Workspace(_isolated_workspace_env).dataset("tiny")
    assert stored.sources == ["tiny log.csv"] and stored.pseudonymized and stored.n_events == 3
    assert charts(at)["Behavior funnel"]["data"][0]["y"] == ["view", "cart", "purchase"]


def test_mapping_override_and_behavior_codes(page: AppTest, _isolated_workspace_env: Path) -> None:
    odd = b"who,what,when,act\nA,x,2024-01-01,0\nA,y,2024-01-02,1\nB,x,2024-01-03,0\n"
    at = upload_and_ingest(
        page,
        ("odd.csv", odd),
        name="odd",
        user_id="who",
        item_id="what",
        timestamp="when",
        behavior="act",
        codes="0=click,1=cart",
    )
    assert not at.exception and not at.error, [e.value for e in at.error]
    info = Workspace(_isolated_workspace_env).dataset("odd")
    assert info.mapping == {"user_id": "who", "item_id": "what", "timestamp": "when", "behavior": "act"}
    assert info.report["behaviors"] == {"click": 2, "cart": 1}
    funnel = charts(at)["Behavior funnel"]["data"][0]
    assert (funnel["y"], funnel["x"]) == (["click", "cart"], [2, 1])  # users per behavior


def test_many_behaviors_and_no_timestamps_stay_drawable(page: AppTest) -> None:
    lines = ["user,item,action"] + [f"u{i % 3},i{i},act{i:02d}" for i in range(40)]
    at = upload_and_ingest(page, ("wide.csv", "\n".join(lines).encode()), name="wide")
    assert not at.exception and not at.error
    specs = charts(at)
    assert "Events per day" not in specs  # no timestamp column: no fake 1970 timeline
    assert len(specs["Behavior funnel"]["data"][0]["y"]) == 14
    heat = specs["Next behavior (within a user)"]["data"][0]
    assert len(heat["x"]) == 15 and heat["x"][-1] == "(other behaviors)"
    notes = [unescape(c.value) for c in at.caption]
    assert "40 behaviors: the charts show the first 14 in funnel order." in notes


def test_a_numeric_id_log_is_guessed_and_charted_by_category(page: AppTest) -> None:
    rows = [
        f"{u},{1000 * (1 + (u + k) % 6)},{b},{1700000000 + 60 * k}"
        for u in range(30)
        for k in range(3)
        for b in (("view", "purchase") if u % 5 else ("purchase",))
    ]  # every user purchases, 4 in 5 view
    log = "\n".join(["user_idx,item_idx,behavior,timestamp", *rows]).encode()
    page.file_uploader(key="events_upload").set_value(("rr.csv", log, "text/csv")).run()
    picked = {b.label: b.value for b in page.selectbox if b.label in ("user_id", "item_id")}
    assert picked == {"user_id": "user_idx", "item_id": "item_idx"} and not page.warning
    next(b for b in page.button if b.label == "Ingest").click()
    specs = charts(no_errors(page.run()))
    assert specs["Top items by events"]["layout"]["yaxis"]["type"] == "category"
    assert specs["Top items by events"]["data"][0]["y"][0] in {str(1000 * k) for k in range(1, 7)}
    assert specs["Users per behavior"]["data"][0]["x"] == [24 / 30, 1.0]  # shares of all users, not a funnel


def test_a_missing_id_column_names_the_form_field_not_a_flag(page: AppTest) -> None:
    at = page.file_uploader(key="events_upload").set_value(("x.csv", b"who,item_id\na,i1\n", "text/csv")).run()
    assert "No column was recognized as user_id" in unescape(at.warning[0].value)
    next(b for b in at.button if b.label == "Ingest").click()
    shown = unescape(at.run().error[0].value)
    assert shown.startswith("No column is picked for user_id. In the Column mapping form, choose the column")
    assert "(one of: who)" in shown and "--" not in shown  # the columns not picked for another field


def test_no_copy_of_an_upload_stays_on_disk(page: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a copy in the temp folder would show up too
    raw = b"alice@example.com"
    log = b"user_id,item_id,behavior\nalice@example.com,i1,view\nbob@mail.example,i2,view\n"

    def holding_raw_ids() -> list[Path]:
        return [p for p in tmp_path.rglob("*") if p.is_file() and raw in p.read_bytes()]

    page.file_uploader(key="events_upload").set_value(("mails.csv", log, "text/csv")).run()
    assert any(s.value == "Column mapping" for s in page.subheader) and not holding_raw_ids()
    next(b for b in page.button if b.label == "Ingest").click()
    no_errors(page.run())
    assert page.sidebar.selectbox[0].value == "mails" and not holding_raw_ids()


def test_unusable_uploads_are_error_messages(page: AppTest) -> None:
    page.file_uploader(key="events_upload").set_value(("empty.csv", b"", "text/csv")).run()
    assert not page.exception
    assert len(page.error) == 1 and unescape(page.error[0].value).startswith("empty.csv is empty")
    at = upload_and_ingest(page, ("header.csv", b"user_id,item_id\n"))
    assert not at.exception
    assert "has no data rows" in unescape(at.error[0].value)
    assert at.sidebar.selectbox[0].options == ["sample"]


def test_user_text_stays_inert(page: AppTest) -> None:
    events = (
        f"user_id,item_id,timestamp,behavior\n"
        f'u1,i1,2024-01-01,"{EVIL}"\nu1,i2,2024-01-02,"{EVIL_LINK}"\n'
        f'u2,i1,2024-01-03,view\nu2,i2,2024-01-04,"{EVIL_BARE}"\n'
    )
    items = f'item_id,title\ni1,"{EVIL}"\ni2,"{EVIL_LINK}"\n'
    at = upload_and_ingest(page, ("xss.csv", events.encode()), ("items.csv", items.encode()), name="xss")
    assert not at.exception and not at.error
    assert not at.get("html") and not at.get("iframe")
    markdown = [
        e.value for kind in ("markdown", "caption", "warning", "error", "info", "success") for e in at.get(kind)
    ]
    assert any(r"\<script\>alert\(1\)\<\/script\>" in m for m in markdown)  # the custom-behavior warning
    for body in markdown:  # no tag, no link/image syntax: every < > [ ] is backslash-escaped
        assert not re.search(r"(?<!\\)[<>\[\]]", body), body
        shown = unescape(body)  # and no bare URL or address GFM would turn into a link
        assert not re.search(r"https?://|www\.|\w@\w", shown, re.IGNORECASE), shown
    assert any("www\u2060.evil.example" in unescape(m) for m in markdown)  # same text, unlinked
    specs = charts(at)  # every string the browser gets, escaped for Plotly's pseudo-HTML
    decoded = [s for spec in specs.values() for s in _strings(spec)]
    assert not [s for s in decoded if "<script" in s or "<a" in s]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in specs["Top items by events"]["data"][0]["y"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in specs["Behavior funnel"]["data"][0]["y"]


def test_reingest_refreshes_the_cached_overview(page: AppTest, _isolated_workspace_env: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp,behavior\nu1,i1,2024-01-01,view\n")
    ws = Workspace(_isolated_workspace_env)
    ingest(ws, log, options=IngestOptions(name="again"))
    page.run()  # the picker lists the new dataset
    page.sidebar.selectbox[0].set_value("again").run()
    assert charts(page)["Behavior funnel"]["data"][0]["y"] == ["view"]
    log.write_text("user_id,item_id,timestamp,behavior\nu1,i1,2024-01-01,view\nu1,i1,2024-01-02,purchase\n")
    ingest(ws, log, options=IngestOptions(name="again"))
    page.run()
    assert charts(page)["Behavior funnel"]["data"][0]["y"] == ["view", "purchase"]


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_item_text_columns_are_preselected_by_name_and_shown_in_the_report(
    page: AppTest, _isolated_workspace_env: Path
) -> None:
    events = (
        "user_id,item_id,event_type,brand,category_code,price,session\n"
        + "".join(f"u{k},p{k % 4},view,acme,kitchen.kettle,{10 + k % 4},s{k}\n" for k in range(40))
    ).encode()
    at = page.file_uploader(key="events_upload").set_value(("shop.csv", events, "text/csv")).run()
    box = next(m for m in at.multiselect if m.label == ITEM_TEXT)
    assert box.value == ["brand", "category_code", "price"]  # by name; the session column is not pre-selected
    box.set_value(["brand", "category_code"])
    at = fill_form(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    texts = set(Workspace(_isolated_workspace_env).items("shop")["item_text"])
    assert texts == {"brand: acme · category: kitchen > kettle"}
    assert any("Item text from brand, category_code for 4 items" in t.value for t in at.text)


def test_a_user_is_forgotten_from_the_page_after_a_confirmation(page: AppTest, _isolated_workspace_env: Path) -> None:
    ws = Workspace(_isolated_workspace_env)
    events = "".join(f"u{k % 5},i{k % 7},{1_700_000_000 + k},view\n" for k in range(60))
    path = _isolated_workspace_env.parent / "log.csv"
    path.write_text("user_id,item_id,timestamp,behavior\n" + events, encoding="utf-8")
    ingest(ws, path, None, IngestOptions(name="log"))
    at = page.run()
    at.text_input(key="forget_user").set_value("u3")
    at.selectbox(key="forget_dataset").set_value("log").run()  # the button is enabled once a user is typed
    at.button(key="forget_ask").click().run()
    assert any("Delete every event of user u3 from dataset log" in unescape(w.value) for w in at.warning)
    assert ws.dataset("log").n_events == 60  # nothing yet
    at.button(key="forget_confirm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(unescape(s.value).startswith("Removed 12 events from log") for s in at.success)
    assert ws.dataset("log").n_events == 48 and ws.dataset("log").n_users == 4
    log = audit.entries(ws).to_dict("records")
    assert (log[0]["action"], log[0]["target"], log[0]["actor"]) == ("forget", "log", "dashboard")
    assert not [r for r in log if "u3" in r["detail"] or ws.pseudonymize(["u3"])[0] in r["detail"]]


def test_the_items_file_text_columns_are_picked_in_the_form(page: AppTest, _isolated_workspace_env: Path) -> None:
    events = b"user_id,item_id,behavior\nu1,i1,view\nu2,i2,view\n"
    items = b"item_id,title,brand\ni1,Red shoe,acme\ni2,Blue hat,zeta\n"
    page.file_uploader(key="events_upload").set_value(("shop.csv", events, "text/csv"))
    at = page.file_uploader(key="items_upload").set_value(("catalogue.csv", items, "text/csv")).run()
    next(m for m in at.multiselect if m.label == ITEMS_TEXT).set_value(["brand"])
    at = fill_form(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = Workspace(_isolated_workspace_env).items("shop")
    assert dict(zip(stored["item_id"], stored["item_text"])) == {"i1": "acme", "i2": "zeta"}
    assert set(stored["title"]) == {"Red shoe", "Blue hat"}  # the title stays the title


def test_a_log_is_appended_to_a_stored_dataset_from_the_form(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = upload_and_ingest(page, ("tiny.csv", TINY), name="tiny")
    more = (
        b"user_id,item_id,timestamp,behavior,value\n"
        + b"u1,i1,2024-01-01T00:00:00Z,view,\nu4,i9,2024-01-04T00:00:00Z,view,\n"
    )
    at = upload_and_ingest(at, ("week2.csv", more), **{"Add the events to": "tiny"})
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metrics(at)["Rows read"] == "2" and metrics(at)["Rows accepted"] == "1"  # u1's view is stored already
    info = " ".join(unescape(i.value) for i in at.info)
    assert "Appended to dataset tiny: 1 event(s) and 1 new item(s) added, 1 row(s) already stored" in info
    assert "holds 4 events, 3 users" in info
    assert "This file: 2 users, 2 items, user IDs pseudonymized" in [t.value for t in at.text]
    ws = Workspace(_isolated_workspace_env)
    assert ws.dataset("tiny").n_events == 4 and "week2" not in ws.dataset_names()
    newest = audit.entries(ws).iloc[0]
    assert (newest["action"], newest["target"]) == ("append", "tiny")
