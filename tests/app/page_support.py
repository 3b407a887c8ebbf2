"""What the analysis-page tests share: server mode, a tiny offline BERT, a tiny trained run.

Imported by the test modules of this folder (pytest puts the folder on ``sys.path``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st
from bert_support import save_tiny_bert  # tests/bert_support.py
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from core.data import synth
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.runs.train import train_run
from core.store.workspace import Workspace

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DATASET = "syn"
TINY = {"device": "cpu", "model": {"d_model": 16, "n_layers": 1, "n_heads": 1, "max_len": 20, "expert_dim": 8,
                                   "n_experts": 2}, "train": {"batch_size": 32, "epochs": 1, "threads": 1}}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "red", "blue", "shoe", "coffee", "bag", "##s"]


def server_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Streamlit's legacy ``pages/`` mode off, as in a live server (see tests/app/test_app.py)."""
    original = PagesManager.__init__

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def tiny_bert(folder: Path) -> Path:
    """A random 1-layer BERT (hidden 8) with a WordPiece tokenizer, saved offline."""
    return save_tiny_bert(folder, VOCAB)


@dataclass
class TinyRun:
    """A workspace with the synthetic dataset ``DATASET`` and one tiny trained run."""

    root: Path
    run_id: str
    data: synth.SyntheticData


def tiny_run(root: Path) -> TinyRun:
    """30 users, 30 items, one epoch, the tiny BERT as the text encoder (user IDs pseudonymized)."""
    data = synth.generate(synth.SynthConfig.small(5, n_users=30, n_items=30, target_events=900))
    synth.write(data, root / "data")
    ws = Workspace(root / "ws")
    ingest(ws, root / "data" / "events.csv", root / "data" / "items.csv", IngestOptions(name=DATASET))
    run_id = train_run(ws, DATASET, {**TINY, "encoder": str(tiny_bert(root / "bert"))})
    return TinyRun(ws.root, run_id, data)


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def open_app(monkeypatch: pytest.MonkeyPatch, root: Path, run_id: str | None, page: str | None = None,
             **state: object) -> AppTest:
    """app.py on the workspace ``root`` with the run picked and ``state`` in the session; then ``page``."""
    monkeypatch.setenv("BEHAVIORLENS_WORKSPACE", str(root))
    server_mode(monkeypatch)
    clear_caches()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dataset"] = DATASET
    if run_id is not None:
        at.session_state["run"] = run_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    return at


def unescape(text: str) -> str:
    """Markdown text as the reader sees it (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by title, as the JSON specs sent to the browser."""
    return {(spec := json.loads(el.proto.spec))["layout"]["title"]["text"]: spec for el in at.get("plotly_chart")}


def frame(at: AppTest, column: str):  # noqa: ANN201 - a DataFrame
    """The one table on the page with ``column``."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in at.dataframe]
    return frames[0]
