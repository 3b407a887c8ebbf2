"""The Export page: the current explanation as CSV and as an HTML report, the global influence as CSV.

One tiny run (30 users, 30 items, one epoch, a random 1-layer BERT as the text encoder) is
trained once into a module workspace. Each test goes the way an analyst does, through
app.py: Explain (or Influence) first, then Export. The files the download buttons offer
are caught where Streamlit registers them (``MediaFileManager.add``).
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import pandas as pd
import pytest
from page_support import no_errors, unescape  # tests/app/page_support.py
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core.views.report import ATTRIBUTION_COLUMNS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> tuple[Path, str]:
    """(workspace folder, run ID) of the module's tiny run."""
    run = tiny_run(tmp_path_factory.mktemp("export-page"))
    return run.root, run.run_id


@pytest.fixture()
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[bytes, str]]:
    """file name -> (bytes, MIME type) of every file a download button registered."""
    files: dict[str, tuple[bytes, str]] = {}
    original = MediaFileManager.add

    def add(
        self: MediaFileManager,
        data: bytes | str,
        mimetype: str,
        coordinates: str,
        file_name: str | None = None,
        is_for_static_download: bool = False,
    ) -> str:
        files[str(file_name)] = (data if isinstance(data, bytes) else Path(data).read_bytes(), mimetype)
        return original(self, data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", add)
    return files


@pytest.fixture()
def app(open_app, trained: tuple[Path, str]) -> AppTest:
    """app.py on the module workspace with the tiny run picked; caches cleared around it."""
    return open_app(*trained)


def visit(at: AppTest, page: str) -> AppTest:
    return no_errors(at.switch_page(page).run())


def buttons(at: AppTest) -> dict[str, object]:
    return {b.proto.label: b for b in at.get("download_button")}


def test_without_anything_computed_the_page_says_what_to_do(app: AppTest) -> None:
    at = visit(app, "pages/export.py")
    assert not at.get("download_button")
    infos = [unescape(i.value) for i in at.info]
    assert any(i.startswith("Nothing explained yet") for i in infos)
    assert any(i.startswith("No global influence computed") for i in infos)


def test_the_current_explanation_downloads_as_csv_and_html(
    app: AppTest, downloads: dict[str, tuple[bytes, str]]
) -> None:
    at = visit(app, "pages/explain.py")
    at.radio(key="explain_method").set_value("loo")
    at.toggle(key="explain_tokens").set_value(True).run()
    request = dict(at.session_state["explained"])
    summary = next(unescape(i.value) for i in at.info if "Times count back from" in unescape(i.value))
    at = visit(at, "pages/export.py")
    assert set(buttons(at)) == {"Attributions (CSV)", "HTML report"}
    csv_name = next(n for n in downloads if n.endswith(".csv"))
    assert csv_name.startswith("explanation-") and csv_name.endswith("-loo-fused.csv")
    data, mime = downloads[csv_name]
    assert mime == "text/csv"
    table = pd.read_csv(io.BytesIO(data), dtype={"user": str, "item": str, "event_item": str})
    assert list(table.columns) == list(ATTRIBUTION_COLUMNS)
    assert (table["user"] == request["user"]).all() and (table["item"] == request["item"]).all()
    assert (table["method"] == "loo").all() and (table["target"] == "fused").all()
    assert table["position"].tolist() == list(range(len(table)))
    page_html, mime = downloads[csv_name.replace(".csv", ".html")]
    text = page_html.decode("utf-8")
    assert mime == "text/html" and text.startswith("<!DOCTYPE html>")
    assert "<script src=" not in text and "Plotly" in text
    assert html.escape(summary) in text  # the summary, as on the Explain page
    assert "Counterfactual set" in text and "bl-timeline" in text and "bl-deletion" in text
    assert "<h2>Text tokens</h2>" in text  # shown on the Explain page, so in the report too


def test_the_computed_influence_downloads_as_csv(app: AppTest, downloads: dict[str, tuple[bytes, str]]) -> None:
    at = visit(app, "pages/influence.py")
    at.number_input(key="influence_users").set_value(10)
    next(b for b in at.button if b.label == "Compute influence").click()
    at.run()
    assert not at.exception and not at.error
    at = visit(at, "pages/export.py")
    assert set(buttons(at)) == {"Global influence (CSV)"}
    name = next(n for n in downloads if n.startswith("influence-"))
    table = pd.read_csv(io.BytesIO(downloads[name][0]))
    assert set(table["section"]) == {"behavior", "time_gap", "category"}
    behaviors = table[table["section"] == "behavior"]
    assert behaviors["share"].sum() == pytest.approx(1.0)
    assert behaviors["ablation_delta_NDCG@10"].notna().all()  # the ablation came along
    assert (table["method"] == "loo").all() and (table["users"] == 10).all()


@pytest.fixture(scope="module")
def private_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset, tiny_bert_dir: Path) -> tuple[Path, str]:
    """(workspace folder, run ID) of a tiny run trained with user-level differential privacy."""
    from tiny_support import TINY_MODEL  # tests/tiny_support.py

    from core.runs.train import train_run

    ds = tiny_dataset(tmp_path_factory.mktemp("private-export"), 5)
    settings = {
        "device": "cpu",
        "encoder": str(tiny_bert_dir),
        "exclude_seen": False,
        "model": dict(TINY_MODEL),
        "train": {"epochs": 1, "batch_size": 8, "privacy": {"epsilon": 8.0}},
    }
    return ds.ws.root, train_run(ds.ws, ds.name, settings)


def test_a_private_run_is_labelled_on_explain_and_in_the_export(
    open_app, private_run: tuple[Path, str], downloads: dict[str, tuple[bytes, str]]
) -> None:
    at = visit(open_app(*private_run), "pages/explain.py")
    labels = [unescape(i.value) for i in at.info if "trained with DP" in unescape(i.value)]
    assert len(labels) == 1 and re.match(rf"Run {private_run[1]} was trained with DP, ε = [0-9.]+, δ = ", labels[0])
    at = visit(at, "pages/export.py")
    assert any("The run was trained with DP, ε = " in unescape(c.value) for c in at.caption)
    report = next(data for name, (data, _) in downloads.items() if name.endswith(".html")).decode("utf-8")
    assert "Model trained with DP, ε = " in report
