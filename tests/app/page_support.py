"""What the app tests share besides fixtures: the app, the dataset name and reading a page.

Imported by the test modules of this folder and by its conftest.py (pytest puts the folder on
``sys.path``). The fixtures (``server_mode``, ``fresh_caches``, ``open_app``) are in conftest.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DATASET = "syn"  # the name tiny_run (tests/conftest.py) ingests its generated dataset under
TINY_FORM = {"train_d_model": 16, "train_n_layers": 1, "train_max_len": 20, "train_epochs": 1}  # Train page keys


def clear_caches() -> None:
    """Clear Streamlit's data and resource caches."""
    st.cache_data.clear()
    st.cache_resource.clear()


def no_errors(at: AppTest) -> AppTest:
    """``at``, after asserting that it shows no exception and no error message."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def unescape(text: str) -> str:
    """Markdown text as the reader sees it (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by title, as the JSON specs sent to the browser."""
    return {(spec := json.loads(el.proto.spec))["layout"]["title"]["text"]: spec for el in at.get("plotly_chart")}


def frame(at: AppTest, column: str):  # -> a DataFrame
    """The one table on the page with ``column``."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in at.dataframe]
    return frames[0]
