"""The Fusion page: live top-K and metrics from cached head outputs, sliders, deltas, presets.

One tiny run (40 users, 30 items, one epoch, the bundled MiniLM encoder) is trained once
into a module workspace; every test opens the page on it through app.py, as a browser
would, with Streamlit's caches cleared around it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from page_support import frame, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.store.run_folder import PRESETS_FILE

PAGE = "pages/fusion.py"
TRAIN = {"batch_size": 64, "epochs": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> tuple[Path, str]:
    """(workspace folder, run ID) of the module's tiny run (40 users, the bundled MiniLM)."""
    run = tiny_run(
        tmp_path_factory.mktemp("fusion-page"), n_users=40, n_items=30, target_events=1500, train=TRAIN, encoder=None
    )
    return run.root, run.run_id


@pytest.fixture()
def page(open_app, trained: tuple[Path, str]) -> AppTest:
    """The Fusion page on the module's run, with no saved preset, opened through app.py without an error."""
    root, run_id = trained
    (root / "runs" / run_id / PRESETS_FILE).unlink(missing_ok=True)
    return no_errors(open_app(root, run_id, PAGE))


def slider(at: AppTest, signal: str):
    return at.slider(key=f"fusion_w_{signal}")


def table(at: AppTest):
    return frame(at, "score")


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_shows_the_formula_table_metrics_and_chart(page: AppTest, trained: tuple[Path, str]) -> None:
    assert any("w_k" in e.value for e in page.latex)
    frame = table(page)
    assert len(frame) == 10
    assert list(frame.columns) == [
        "rank",
        "change",
        "item_id",
        "title",
        "score",
        "engagement",
        "rating",
        "popularity",
        "freshness",
    ]
    assert frame["score"].is_monotonic_decreasing
    assert frame["score"].tolist() == pytest.approx(frame["engagement"].tolist())  # engagement = 1 by default
    assert set(metric_values(page)) == {"HR@10", "NDCG@10", "MRR@10", "Coverage@10", "Mean popularity@10"}
    assert len(page.get("plotly_chart")) == 1
    root, run_id = trained
    assert any((root / "runs" / run_id / "fusion").glob("*.safetensors"))  # cached in the run folder
    captions = [c.value.replace("\\", "").replace("\u2060", "") for c in page.caption]  # unescaped
    assert any("asked at the stand-in time" in c for c in captions)
    assert any(c.startswith("Baselines on the same split, no model: popularity NDCG@10") for c in captions)


def test_the_request_time_choice_reaches_the_metrics(page: AppTest) -> None:
    page.radio(key="fusion_request_time").set_value("at their own time (known)").run()
    assert not page.exception
    assert any("time-aware: target time known" in c.value.replace("\\", "") for c in page.caption)


def test_moving_a_slider_changes_the_table_and_the_metrics(page: AppTest) -> None:
    before_table, before_metrics = table(page), metric_values(page)
    slider(page, "engagement").set_value(0.0)
    slider(page, "popularity").set_value(1.0).run()
    assert not page.exception and not page.error
    after_table, after_metrics = table(page), metric_values(page)
    assert after_table["item_id"].tolist() != before_table["item_id"].tolist()
    assert after_table["score"].tolist() == pytest.approx(after_table["popularity"].tolist())
    assert after_metrics != before_metrics
    deltas = [m.delta for m in page.metric]
    assert all(d is not None and re.fullmatch(r"[+-]\d+\.\d{4}", d) for d in deltas)
    assert any(float(d) != 0 for d in deltas)
    assert any(c.startswith(("▲", "▼")) for c in after_table["change"])


def test_all_zero_weights_show_a_clear_error(page: AppTest) -> None:
    slider(page, "engagement").set_value(0.0).run()
    assert not page.exception
    assert any("all zero" in e.value for e in page.error)


def test_saved_preset_becomes_the_runs_default(page: AppTest, trained: tuple[Path, str]) -> None:
    root, run_id = trained
    slider(page, "rating").set_value(0.5).run()
    page.text_input(key="fusion_preset_name").set_value("half-rating")
    page.button(key="fusion_save").click().run()
    assert not page.exception and not page.error
    stored = json.loads((root / "runs" / run_id / PRESETS_FILE).read_text())
    assert stored["default"] == "half-rating"
    assert stored["presets"]["half-rating"]["rating"] == pytest.approx(1 / 3)
    assert any("Saved preset half-rating" in unescape(s.value) for s in page.success)
    page.session_state["fusion_loaded_run"] = None  # as when the page opens on this run again
    page.run()
    assert slider(page, "rating").value == pytest.approx(0.33)
    assert slider(page, "engagement").value == pytest.approx(0.67)
    assert page.selectbox(key="fusion_preset_pick").value == "half-rating"


def test_without_a_run_the_page_says_so(open_app) -> None:
    at = open_app(page=PAGE)
    assert not at.exception and not at.error
    assert any("No trained run" in unescape(i.value) for i in at.info)
