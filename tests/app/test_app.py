"""The frame (app.py): runs, puts the sample dataset in a fresh workspace, picks datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_support import APP, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.store.workspace import Workspace


@pytest.fixture()
def app(server_mode: None, fresh_caches: None) -> AppTest:
    """A fresh AppTest of app.py in server mode, with every Streamlit cache cleared around it."""
    return AppTest.from_file(APP, default_timeout=60)


def test_app_runs_and_shows_the_sample_dataset(app: AppTest, _isolated_workspace_env: Path) -> None:
    app.run()
    assert not app.exception
    assert not app.error
    picker = app.sidebar.selectbox[0]
    assert picker.label == "Dataset" and picker.value == "sample" and picker.options == ["sample"]
    assert "sample" in app.dataframe[0].value["name"].tolist()
    status = [unescape(c.value) for c in app.sidebar.caption]
    assert f"Workspace: {_isolated_workspace_env.resolve()}" in status
    assert "1 dataset(s)" in status
    n_events = Workspace(_isolated_workspace_env).dataset("sample").n_events
    assert f"sample: {n_events:,} events" in status


def test_sample_is_ingested_once_per_process(app: AppTest, _isolated_workspace_env: Path) -> None:
    app.run()
    created = Workspace(_isolated_workspace_env).dataset("sample").created_at
    app.run()
    assert not app.exception
    assert Workspace(_isolated_workspace_env).dataset("sample").created_at == created


def test_unknown_dataset_in_session_falls_back_to_sample(app: AppTest) -> None:
    app.session_state["dataset"] = "gone"
    app.run()
    assert not app.exception
    assert app.sidebar.selectbox[0].value == "sample"


def test_picker_lists_every_dataset(app: AppTest, _isolated_workspace_env: Path, tmp_path: Path) -> None:
    from core.ingest.options import IngestOptions
    from core.ingest.pipeline import ingest

    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,timestamp,behavior\nu1,i1,2024-01-01,view\n")
    ingest(Workspace(_isolated_workspace_env), log, options=IngestOptions(name="other"))
    app.run()
    picker = app.sidebar.selectbox[0]
    assert sorted(picker.options) == ["other", "sample"] and picker.value == "sample"
    picker.set_value("other").run()
    assert not app.exception
    assert app.session_state["dataset"] == "other"
    assert "other: 1 events" in [unescape(c.value) for c in app.sidebar.caption]


def test_unusable_workspace_is_an_error_message_not_a_crash(
    app: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the workspace folder should be")
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(blocker))
    app.run()
    assert not app.exception
    assert app.error and "cannot create workspace folder" in unescape(app.error[0].value)


def test_page_opened_first_routes_through_the_frame(fresh_caches: None) -> None:
    """Legacy ``pages/`` mode (a server's first run on /data): the page still gets the frame."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/data.py").run()  # AppTest restarts legacy mode for this run
    assert not at.exception and not at.error
    assert at.title[0].value == "Data"
    assert at.sidebar.selectbox[0].value == "sample"  # app.py's sidebar ran too
    assert len(at.get("plotly_chart")) == 6
