"""What the pages share: every ``st.cache_*`` wrapper, safe text output, upload files.

Caches are keyed so that they cannot go stale: the workspace handle by the
workspace folder, overview tables by (folder, dataset name, ``created_at``), so a
re-ingest (new ``created_at``) is recomputed. User-supplied text never reaches
Streamlit's Markdown unescaped: :func:`plain` backslash-escapes it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

try:  # not a public API: without it, route_through_frame does nothing
    from streamlit.runtime.pages_manager import PagesManager
except ImportError:  # pragma: no cover
    PagesManager = None  # type: ignore[assignment,misc]

from core.errors import BehaviorLensError
from core.overview import Overview, compute_overview
from core.sample import ensure_sample_dataset
from core.workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV, DatasetInfo, Workspace

DATASET_KEY = "dataset"  # session key of the sidebar dataset picker
PENDING_DATASET_KEY = "dataset_pending"  # a dataset to select on the next run (after an ingest)
REPORT_KEY = "ingest_report"  # the last ingest's report, as a dict
RUN_KEY = "run"  # the run the analysis pages use (picked on the Train page)
TRAIN_JOB_KEY = "train_job"  # run ID of this session's latest training job (core.training_job registry)
UPLOADS_KEY = "_uploads"  # file_id -> saved temp path of this session's uploads
DEFAULT_DATASET = "sample"
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
# Where GFM would autolink a bare URL or e-mail address found in the rendered text.
_AUTOLINK = re.compile(r"(?i)(?=://)|(?<=www)(?=\.)|(?=@)")
WORD_JOINER = "\u2060"  # invisible, zero width: breaks the autolink patterns, not the text
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


# -- routing ---------------------------------------------------------------------
def route_through_frame() -> None:
    """Call first on every page: make sure the page runs inside app.py's frame.

    A folder named ``pages/`` next to app.py puts Streamlit in its legacy
    multipage mode until app.py's ``st.navigation`` switches it off for the
    process. When a server's first run opens a page URL directly (a bookmark to
    ``/data`` after a restart), or in every AppTest run, Streamlit runs the page
    file alone: no sidebar, no session defaults, and every ``pages/*.py`` listed
    as a page. Switching the mode off and rerunning the same page hash routes the
    run through app.py, which then runs this page from its navigation.
    """
    if PagesManager is not None and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


# -- caches ----------------------------------------------------------------------
def workspace_root() -> str:
    """The workspace folder this process uses (``BEHAVIORLENS_WORKSPACE`` or ``./workspace``)."""
    return str(Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser().resolve())


@st.cache_resource(show_spinner=False)
def _workspace_at(root: str) -> Workspace:
    return Workspace(root)


def get_workspace() -> Workspace:
    """The (cached) workspace handle of :func:`workspace_root`."""
    return _workspace_at(workspace_root())


@st.cache_resource(show_spinner="Preparing the sample dataset…")
def _sample_ready(root: str) -> bool:
    ensure_sample_dataset(_workspace_at(root))
    return True


def ensure_sample() -> bool:
    """Put the bundled sample dataset in the workspace, once per process and workspace."""
    return _sample_ready(workspace_root())


@st.cache_data(show_spinner="Computing the overview…", max_entries=16)
def _overview(root: str, dataset: str, created_at: str) -> Overview:
    del created_at  # part of the cache key only: a re-ingest gets a new one
    return compute_overview(_workspace_at(root), dataset)


def load_overview(workspace: Workspace, info: DatasetInfo) -> Overview:
    """Overview tables of a dataset, recomputed only when the dataset is re-ingested."""
    return _overview(str(workspace.root), info.name, info.created_at.isoformat())


# -- safe text ---------------------------------------------------------------------
def plain(text: object) -> str:
    """``text`` escaped for Streamlit Markdown: no link, image, HTML, emphasis or directive.

    Backslash escapes stop Markdown syntax, but GFM also turns bare URLs and
    e-mail addresses into links after parsing, so a word joiner goes before
    ``://``, after ``www`` and before ``@``: the text reads the same, unlinked.
    """
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, str(text)))


def show_error(exc: BehaviorLensError) -> None:
    """Show one of the project's errors (its message names the column and value) as text."""
    st.error(plain(str(exc)))


def show_warnings(warnings: list[str]) -> None:
    """One ``st.warning`` per warning, as plain text."""
    for warning in warnings:
        st.warning(plain(warning))


# -- uploads -----------------------------------------------------------------------
def safe_file_name(name: str) -> str:
    """An upload's name reduced to safe characters, its suffixes (``.csv.gz``) kept."""
    cleaned = _UNSAFE_NAME.sub("_", Path(name).name).lstrip(".-_") or "upload"
    return cleaned[-128:]


def saved_upload(uploaded: Any) -> Path:
    """Save a Streamlit ``UploadedFile`` once per upload; its temp path keeps the original name.

    The file lies alone in a fresh temp folder, so ingest sees the original name
    and suffix (format detection, report sources). A replaced upload's folder is
    removed.
    """
    saved: dict[str, str] = st.session_state.setdefault(UPLOADS_KEY, {})
    path = saved.get(uploaded.file_id)
    if path is not None and Path(path).is_file():
        return Path(path)
    folder = Path(tempfile.mkdtemp(prefix="behaviorlens-upload-"))
    target = folder / safe_file_name(uploaded.name)
    uploaded.seek(0)
    with open(target, "wb") as out:
        shutil.copyfileobj(uploaded, out, 1024 * 1024)
    saved[uploaded.file_id] = str(target)
    return target


def forget_uploads(keep: set[str]) -> None:
    """Delete the temp copies of this session's uploads whose file IDs are not in ``keep``."""
    saved: dict[str, str] = st.session_state.setdefault(UPLOADS_KEY, {})
    for file_id in [f for f in saved if f not in keep]:
        shutil.rmtree(Path(saved.pop(file_id)).parent, ignore_errors=True)


# -- fusion (the Fusion page) ----------------------------------------------------------
# core.fusion_* import torch (through core.runs): imported on first use, so that pages
# without a model do not pay for it.
def _model_sha(root: str, run_id: str) -> str | None:
    from core.checkpoint import load_json

    return load_json(_workspace_at(root).run_dir(run_id) / "config.json").get("weights_sha256")


@st.cache_resource(show_spinner="Computing the run's head outputs for every user (once per run)…", max_entries=8)
def _fusion_candidates(root: str, run_id: str, context: str, model_sha: str | None) -> tuple[Any, dict[str, Any]]:
    from core.fusion_runs import run_candidates

    del model_sha  # part of the cache key only: a retrained run gets new head outputs
    return run_candidates(_workspace_at(root), run_id, context)


def load_fusion(workspace: Workspace, run_id: str, context: str) -> tuple[Any, dict[str, Any]]:
    """A run's cached fusion candidates (``core.fusion_ranking.Candidates``) and their metadata; read-only."""
    root = str(workspace.root)
    return _fusion_candidates(root, run_id, context, _model_sha(root, run_id))


@st.cache_data(show_spinner="Sweeping the weight simplex…", max_entries=8)
def _fusion_sweep(root: str, run_id: str, model_sha: str | None, step: float) -> Any:
    import pandas as pd

    from core.fusion_ranking import sweep

    cands, _ = _fusion_candidates(root, run_id, "test", model_sha)
    return pd.DataFrame(sweep(cands, step))


def load_fusion_sweep(workspace: Workspace, run_id: str, step: float = 0.25) -> Any:
    """Metrics of every weight setting on a ``step`` grid of the simplex (a DataFrame), once per run."""
    root = str(workspace.root)
    return _fusion_sweep(root, run_id, _model_sha(root, run_id), step)


@st.cache_data(show_spinner=False, max_entries=16)
def _item_titles(root: str, dataset: str, created_at: str) -> Any:
    from core import schema as S

    del created_at  # part of the cache key only: a re-ingest gets a new one
    return _workspace_at(root).items(dataset)[[S.ITEM_ID, S.ITEM_TITLE]]


def load_item_titles(workspace: Workspace, info: DatasetInfo) -> Any:
    """``[item_id, title]`` of a dataset's items, recomputed only when the dataset is re-ingested."""
    return _item_titles(str(workspace.root), info.name, info.created_at.isoformat())
