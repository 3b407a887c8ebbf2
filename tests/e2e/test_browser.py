"""One real browser session: `streamlit run app.py` + Debian chromium driven by Playwright.

Chromium is required: a missing browser FAILS this test with instructions,
unless BEHAVIORLENS_SKIP_BROWSER=1 says to skip it on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (  # tests/e2e/browser_support.py
    browser_page,
    require_browser,
    serve,
)

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 120_000
TRAIN_TIMEOUT_MS = 480_000  # the bundled MiniLM encodes the sample's 400 item texts on a busy CPU
TINY_FORM = (("Model width (d_model)", "16"), ("Layers", "1"), ("Max history length", "20"), ("Epochs", "1"))


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    """The dashboard as `make demo` serves it (`serve.py`) on 127.0.0.1 and a free port, with its own workspace."""
    require_browser()
    with serve(tmp_path / "workspace", tmp_path / "streamlit.log") as url:
        yield url


def test_data_page_shows_the_sample_behaviors(server: str) -> None:
    from playwright.sync_api import expect

    wait = RENDER_TIMEOUT_MS
    with browser_page(server, wait) as page:
        expect(page.get_by_role("heading", name="BehaviorLens")).to_be_visible(timeout=wait)
        expect(page.get_by_test_id("stSidebar").get_by_text("sample: ")).to_be_visible(timeout=wait)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Data").click()
        expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=wait)
        shares = page.get_by_test_id("stPlotlyChart").filter(has_text="Users per behavior")
        expect(shares).to_have_count(1, timeout=wait)  # more sample users cart than favorite: no funnel
        expect(shares).to_contain_text("not a funnel: more users did cart than favorite", timeout=wait)
        for behavior in ("view", "cart", "purchase"):  # behaviors, as axis labels
            label = shares.locator("g.ytick", has_text=re.compile(rf"^{behavior}$"))
            expect(label).to_have_count(1, timeout=wait)
        expect(page.get_by_test_id("stPlotlyChart")).to_have_count(6, timeout=wait)
        assert page.get_by_test_id("stException").count() == 0
        train_a_tiny_run(page, wait)
        explain_the_first_user(page, wait)


def numeric_id_log(users: int = 100) -> str:
    """A RetailRocket-style log: numeric IDs in ``*_idx`` columns; every user purchases, 4 in 5 view (340 rows)."""
    rows = ["user_idx,item_idx,behavior,timestamp"]
    for u in range(users):
        for k in range(3):
            item, ts = 1000 * (1 + (u * 7 + k) % 6) + 7, 1700000000 + 3600 * u + 60 * k
            rows += [f"{u},{item},view,{ts}"] * (u % 5 != 0) + [f"{u},{item},purchase,{ts + 30}"] * (k == 2)
    return "\n".join(rows) + "\n"


def test_a_numeric_id_log_is_mapped_ingested_and_drawn(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    log = tmp_path / "rr_idx.csv"
    log.write_text(numeric_id_log())
    wait = RENDER_TIMEOUT_MS
    with browser_page(server, wait) as page:
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Data").click()
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(str(log))
        form = page.get_by_test_id("stForm")
        for field, column in (("user_id", "user_idx"), ("item_id", "item_idx"), ("behavior", "behavior")):
            expect(form.get_by_role("combobox", name=field, exact=True)).to_have_value(column, timeout=wait)
        form.get_by_role("button", name="Ingest", exact=True).click()
        expect(page.get_by_test_id("stSidebar").get_by_text("rr_idx: 340 events")).to_be_visible(timeout=wait)
        charts = page.get_by_test_id("stPlotlyChart")
        expect(charts).to_have_count(6, timeout=wait)
        bars = "g.trace.bars path"
        drawn = (
            ("Users per behavior", bars),
            ("Next behavior", "g.hm image"),
            ("Events per day", "path.js-line"),
            ("Events per user", bars),
            ("Events per item", bars),
            ("Top items by events", bars),
        )
        for title, marks in drawn:
            expect(charts.filter(has_text=title).locator(marks)).not_to_have_count(0, timeout=wait)
        top = charts.filter(has_text="Top items by events")
        ids = {str(1000 * k + 7) for k in range(1, 7)}
        expect(top.locator("g.ytick")).to_have_count(6, timeout=wait)  # one label per bar: names, not a scale
        assert set(top.locator("g.ytick").all_text_contents()) == ids
        assert top.locator(".js-plotly-plot").evaluate("d => d._fullLayout.yaxis.type") == "category"
        expect(charts.filter(has_text="Users per behavior")).to_contain_text("not a funnel", timeout=wait)
        assert page.get_by_test_id("stException").count() == 0


def train_a_tiny_run(page: Any, wait: int) -> None:
    """Train page: a tiny model on the sample, live panel, then the run in the saved-runs table."""
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=wait)
    form = page.get_by_test_id("stForm")
    for label, value in TINY_FORM:
        box = form.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")  # a number input commits its value on blur
        expect(box).to_have_value(value, timeout=wait)
    form.get_by_role("button", name="Train", exact=True).click()
    started = page.get_by_text(re.compile(r"^Run \S+ on dataset sample$"))
    expect(started).to_be_visible(timeout=wait)
    run_id = started.inner_text().split()[1]
    expect(page.get_by_test_id("stProgress")).to_be_visible(timeout=wait)
    finished = page.get_by_text(re.compile(rf"^Run {re.escape(run_id)} finished: best epoch 1"))
    expect(finished).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    table = page.get_by_test_id("stDataFrame")
    expect(table).to_have_count(1, timeout=wait)
    expect(table.get_by_text(run_id, exact=True)).to_have_count(1, timeout=wait)  # the grid's a11y cells
    expect(page.get_by_role("combobox", name="Run for the other pages")).to_have_value(run_id, timeout=wait)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(2, timeout=wait)  # loss, validation
    assert page.get_by_test_id("stException").count() == 0


def explain_the_first_user(page: Any, wait: int) -> None:
    """Explain page on the run just trained: the first user's top item, its timeline and the summary."""
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Explain").click()
    expect(page.get_by_role("heading", name="Explain", exact=True)).to_be_visible(timeout=wait)
    timeline = (
        page.get_by_test_id("stPlotlyChart")
        .filter(has=page.locator("g.scatterlayer"))
        .filter(has_text="Event timeline: attribution per event")
    )
    expect(timeline).to_have_count(1, timeout=wait)
    expect(timeline.locator("g.scatterlayer path.point").first).to_be_visible(timeout=wait)  # event markers
    summary = page.get_by_test_id("stAlert").filter(has_text="Times count back from this history's latest event")
    expect(summary).to_have_count(1, timeout=wait)
    expect(summary).to_contain_text("is recommended", timeout=wait)  # the default target: the fused score
    expect(page.get_by_role("heading", name="Counterfactual set")).to_be_visible(timeout=wait)
    assert page.get_by_test_id("stException").count() == 0
