"""What the pages share: the ``st.cache_*`` wrappers, routing, the run picker, safe text (:func:`plain`), upload sweeps.

Shared between sessions, so immutable or locked: the workspace (by folder), overview tables (by dataset and
``created_at``), one ``Run`` handle per run and weights digest (its memo is locked). What an analyst picks,
uploads or starts lives in their own ``st.session_state``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import streamlit as st

try:  # not a public API: without it, route_through_frame does nothing
    from streamlit.runtime.pages_manager import PagesManager
except ImportError:  # pragma: no cover
    PagesManager = None

from core.errors import BehaviorLensError
from core.ingest.overview import Overview, compute_overview
from core.ingest.sample import ensure_sample_dataset
from core.model.privacy import privacy_label
from core.runs.records import usable_runs
from core.runs.run import Run, open_run, run_digest
from core.store.scratch import sweep_scratch
from core.store.uploads import sweep_stale_uploads
from core.store.versions import forget_count
from core.store.workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV, DatasetInfo, Workspace
from pages._advice import page_text

DATASET_KEY = "dataset"  # session key of the sidebar dataset picker
PENDING_DATASET_KEY = "dataset_pending"  # a dataset to select on the next run (after an ingest)
REPORT_KEY = "ingest_report"  # the last ingest's report, as a dict
RUN_KEY = "run"  # the run the analysis pages use (picked on the Train page)
TRAIN_JOB_KEY = "train_job"  # run ID of this session's latest training (its worker: core.runs.background)
EXPLAINED_KEY = "explained"  # the Explain page's current request (run, user, item, method, target, k...)
INFLUENCE_KEY = "influence"  # the Influence page's last computed (run, settings)
DEFAULT_DATASET = "sample"
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_AUTOLINK = re.compile(r"(?i)(?=://)|(?<=www)(?=\.)|(?=@)")
WORD_JOINER = "\u2060"  # invisible, zero width: breaks the autolink patterns, not the text


def route_through_frame() -> None:
    """Call first on every page: a page opened directly (a bookmark after a restart, AppTest) runs alone in
    Streamlit's legacy ``pages/`` mode; switching that off and rerunning routes it through app.py's frame."""
    if PagesManager is not None and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def workspace_root() -> str:
    """The workspace folder this process uses (``BEHAVIORLENS_WORKSPACE`` or ``./workspace``)."""
    return str(Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser().resolve())


def sweep_uploads() -> None:
    """Delete upload copies untouched for an hour (a crash mid-ingest): Streamlit has no session-end hook, so
    the frame calls this on every run, from the app's first run on (``core.store.uploads``)."""
    sweep_stale_uploads(workspace_root())
    sweep_scratch()  # and what a killed ingest, or an earlier release's uploads, left in the temp folder


@st.cache_resource(show_spinner=False)
def _workspace_at(root: str) -> Workspace:  # one handle per folder
    return Workspace(root)


def get_workspace() -> Workspace:
    """The (cached) workspace handle of :func:`workspace_root`."""
    return _workspace_at(workspace_root())


@st.cache_resource(show_spinner="Preparing the sample dataset…")
def ensure_sample(root: str) -> bool:
    """Put the bundled sample dataset in the workspace at ``root`` (:func:`workspace_root`), once per process."""
    ensure_sample_dataset(_workspace_at(root))
    return True


@st.cache_data(show_spinner="Computing the overview…", max_entries=16)
def _overview(root: str, dataset: str, created_at: str) -> Overview:
    del created_at  # part of the cache key only: a re-ingest gets a new one
    return compute_overview(_workspace_at(root), dataset)


def load_overview(workspace: Workspace, info: DatasetInfo) -> Overview:
    """Overview tables of a dataset, recomputed only when the dataset is re-ingested or a user forgotten (fewer
    events)."""
    return _overview(str(workspace.root), info.name, f"{info.created_at.isoformat()}/{info.n_events}")


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_handle(root: str, run_id: str, digest: str | None, forgets: int) -> Run:
    del digest, forgets  # part of the cache key only: a retrained run, or a forgotten user, gets a new handle
    return open_run(_workspace_at(root), run_id)


def get_run(workspace: Workspace, run_id: str) -> Run:
    """The shared handle of a run (its model and derived results load once per weights digest, and again after a
    user is forgotten: a handle holds the rows it loaded)."""
    return _run_handle(str(workspace.root), run_id, run_digest(workspace, run_id), forget_count(workspace))


def pick_run(workspace: Workspace, key: str) -> Run | None:
    """The session's run (``RUN_KEY``), else the dataset's newest usable one (kept in ``RUN_KEY``); None if none."""
    options = usable_runs(workspace, st.session_state.get(DATASET_KEY))
    if not options:
        from pages._waiting import no_usable_run  # it imports this module: not at the top

        return no_usable_run(workspace, st.session_state.get(DATASET_KEY))
    current = st.session_state.get(RUN_KEY)
    run_id = st.selectbox("Run", options, index=options.index(current) if current in options else 0, key=key)
    st.session_state[RUN_KEY] = run_id
    run = get_run(workspace, run_id)
    if run.mark:
        st.warning(plain(f"Run {run_id} was {run.mark}: retrain it on the Train page."))
    private = privacy_label(run.privacy)
    if private:
        st.info(plain(f"Run {run_id} was {private}."))
    return run


def page_actor() -> str:
    """Who acts on the pages, for the audit log: the signed-in user's e-mail, else ``dashboard``."""
    user = getattr(st, "user", None)
    email = getattr(user, "email", None) if user is not None and getattr(user, "is_logged_in", False) else None
    return str(email) if email else "dashboard"


def plain(text: object) -> str:
    """``text`` escaped for Markdown (no link, image, HTML, emphasis or directive); a word joiner before
    ``://``, after ``www`` and before ``@`` stops GFM's autolinks after parsing."""
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, str(text)))


def show_error(exc: BehaviorLensError) -> None:
    """Show one of the project's errors (its message names the column and value; an ingest option as the Data
    page's box) as text."""
    st.error(plain(page_text(exc)))


def show_warnings(warnings: list[str]) -> None:
    """One ``st.warning`` per warning, as plain text; an ingest option named as the Data page's box."""
    for warning in warnings:
        st.warning(plain(page_text(warning)))
