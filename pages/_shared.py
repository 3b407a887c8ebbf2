"""What the pages share: every ``st.cache_*`` wrapper, safe text output, upload files, the run picker.

Caches are keyed so that they cannot go stale: the workspace handle by the
workspace folder, overview tables by (folder, dataset name, ``created_at``), so a
re-ingest (new ``created_at``) is recomputed; a run's model, explanations,
counterfactual sets, influence reports and ablation by (folder, run, the model's
weights checksum), so a retrained run is recomputed. User-supplied text never reaches
Streamlit's Markdown unescaped: :func:`plain` backslash-escapes it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

try:  # not a public API: without it, route_through_frame does nothing
    from streamlit.runtime.pages_manager import PagesManager
except ImportError:  # pragma: no cover
    PagesManager = None  # type: ignore[assignment,misc]

from core.errors import BehaviorLensError
from core.ingest.overview import Overview, compute_overview
from core.ingest.sample import ensure_sample_dataset
from core.store.workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV, DatasetInfo, Workspace

DATASET_KEY = "dataset"  # session key of the sidebar dataset picker
PENDING_DATASET_KEY = "dataset_pending"  # a dataset to select on the next run (after an ingest)
REPORT_KEY = "ingest_report"  # the last ingest's report, as a dict
RUN_KEY = "run"  # the run the analysis pages use (picked on the Train page)
TRAIN_JOB_KEY = "train_job"  # run ID of this session's latest training job (core.runs.jobs registry)
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
# core.fusion_* import torch (through core.runs.records): imported on first use, so that pages
# without a model do not pay for it.
def _model_sha(root: str, run_id: str) -> str | None:
    from core.store.files import load_json

    return load_json(_workspace_at(root).run_dir(run_id) / "config.json").get("weights_sha256")


@st.cache_resource(show_spinner="Computing the run's head outputs for every user (once per run)…", max_entries=8)
def _fusion_candidates(root: str, run_id: str, context: str, model_sha: str | None) -> tuple[Any, dict[str, Any]]:
    from core.runs.fusion import run_candidates

    del model_sha  # part of the cache key only: a retrained run gets new head outputs
    return run_candidates(_workspace_at(root), run_id, context)


def load_fusion(workspace: Workspace, run_id: str, context: str) -> tuple[Any, dict[str, Any]]:
    """A run's cached fusion candidates (``core.fusion.ranking.Candidates``) and their metadata; read-only."""
    root = str(workspace.root)
    return _fusion_candidates(root, run_id, context, _model_sha(root, run_id))


@st.cache_data(show_spinner="Sweeping the weight simplex…", max_entries=8)
def _fusion_sweep(root: str, run_id: str, model_sha: str | None, step: float) -> Any:
    import pandas as pd

    from core.fusion.ranking import sweep

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


# -- analysis (the Influence, Explain and Export pages) -------------------------------------
# Keyed by (workspace, run, the model's weights checksum): a retrained run is recomputed.
# Users are stored IDs (pseudonyms where the dataset has them); ``label`` is the ID shown.
EXPLAINED_KEY = "explained"  # the Explain page's current request (run, user, item, method, target, k...)
INFLUENCE_KEY = "influence"  # the Influence page's last computed (run, settings)
Weights = tuple[tuple[str, float], ...] | None  # hashable fusion weights


def pick_run(ws: Workspace, key: str) -> str | None:
    """The run to analyse: the one picked on the Train page (``RUN_KEY``) or the dataset's newest usable one.

    Usable runs are done or cancelled (they have a saved model) and of the sidebar's dataset;
    the choice is written back to ``RUN_KEY``, so every analysis page follows it.
    """
    from core.runs.records import CANCELLED, DONE, list_runs

    runs = list_runs(ws)
    usable = runs[runs["status"].isin([DONE, CANCELLED])] if len(runs) else runs
    if len(usable) and st.session_state.get(DATASET_KEY) is not None:
        usable = usable[usable["dataset"] == st.session_state.get(DATASET_KEY)]
    options = usable["run_id"].tolist() if len(usable) else []
    if not options:
        st.info("No trained run of this dataset yet: train one on the Train page.")
        return None
    current = st.session_state.get(RUN_KEY)
    run = st.selectbox("Run", options, index=options.index(current) if current in options else 0, key=key)
    st.session_state[RUN_KEY] = run
    return run


def _frozen(weights: dict[str, float] | None) -> Weights:
    return None if weights is None else tuple(sorted((k, float(v)) for k, v in weights.items()))


def _titles(root: str, run_id: str) -> Any:
    from core.explain.subject import titles_of
    from core.runs.records import run_record

    ws = _workspace_at(root)
    return titles_of(ws.items(run_record(ws, run_id)["dataset"]))


@st.cache_resource(show_spinner="Loading the run's model…", max_entries=2)
def _recommender(root: str, run_id: str, model_sha: str | None) -> Any:
    from core.runs.records import load_run

    del model_sha  # part of the cache key only
    return load_run(_workspace_at(root), run_id)


def load_recommender(workspace: Workspace, run_id: str) -> Any:
    """A run's fitted ``Recommender`` over its dataset's events (shared, read-only), loaded once per run."""
    root = str(workspace.root)
    return _recommender(root, run_id, _model_sha(root, run_id))


def user_top(workspace: Workspace, run_id: str, user: str, k: int) -> tuple[Any, dict[str, float], str | None]:
    """A user's top-k by fused score with the run's default weights (engagement alone without a preset):
    the table (rank, item_id, title, score, every signal), the weights and the preset's name."""
    from core.errors import NotFoundError
    from core.runs.fusion import default_weights, recommendation_table, run_item_ids

    cands, meta = load_fusion(workspace, run_id, "all")
    name, weights = default_weights(workspace, run_id)
    weights = weights or {"engagement": 1.0}
    if user not in meta["user_ids"]:
        raise NotFoundError(f"user {user!r} is not in the data of run {run_id}")
    titles = _item_titles(str(workspace.root), *_dataset_stamp(workspace, run_id))
    table = recommendation_table(cands, meta["user_ids"].index(user), int(k), weights,
                                 run_item_ids(workspace, run_id), titles)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table, weights, name


def _dataset_stamp(workspace: Workspace, run_id: str) -> tuple[str, str]:
    from core.runs.records import run_record

    info = workspace.dataset(run_record(workspace, run_id)["dataset"])
    return info.name, info.created_at.isoformat()


@st.cache_data(show_spinner="Explaining…", max_entries=64)
def _explanation(root: str, run_id: str, sha: str | None, user: str, label: str, item: str, method: str,
                 target: str, weights: Weights) -> Any:
    from core.explain import explain

    return explain(_recommender(root, run_id, sha), user, item, method, target, titles=_titles(root, run_id),
                   weights=None if weights is None else dict(weights), user_label=label, run=run_id)


def load_explanation(workspace: Workspace, run_id: str, user: str, item: str, method: str, target: str,
                     weights: dict[str, float] | None, label: str | None = None) -> Any:
    """``core.explain.explain`` of a stored user and an item under the run (an ``Explanation``), cached."""
    root = str(workspace.root)
    return _explanation(root, run_id, _model_sha(root, run_id), user, label or user, item, method, target,
                        _frozen(weights))


@st.cache_data(show_spinner="Searching for a counterfactual set…", max_entries=64)
def _counterfactual(root: str, run_id: str, sha: str | None, user: str, label: str, item: str, k: int) -> Any:
    from core.explain.counterfactual import counterfactual_set

    return counterfactual_set(_recommender(root, run_id, sha), user, item, k, titles=_titles(root, run_id),
                              user_label=label, run=run_id)


def load_counterfactual(workspace: Workspace, run_id: str, user: str, item: str, k: int,
                        label: str | None = None) -> Any:
    """The counterfactual set (``core.explain.counterfactual.CounterfactualSet``) of a stored user and an item, cached."""
    root = str(workspace.root)
    return _counterfactual(root, run_id, _model_sha(root, run_id), user, label or user, item, int(k))


@st.cache_data(show_spinner="Attributing the item text's tokens (runs the text encoder)…", max_entries=32)
def _tokens(root: str, run_id: str, sha: str | None, user: str, item: str, target: str, weights: Weights) -> Any:
    from core.explain.tokens import token_attributions

    return token_attributions(_recommender(root, run_id, sha), user, item, target, titles=_titles(root, run_id),
                              weights=None if weights is None else dict(weights))


def load_token_attributions(workspace: Workspace, run_id: str, user: str, item: str, target: str,
                            weights: dict[str, float] | None) -> Any:
    """``core.explain.tokens.token_attributions`` of the candidate item's text (a list), cached."""
    root = str(workspace.root)
    return _tokens(root, run_id, _model_sha(root, run_id), user, item, target, _frozen(weights))


@st.cache_resource(show_spinner=False)
def _analysis_store(root: str) -> dict[tuple[Any, ...], Any]:
    """Results computed outside a cached function (so that they can drive a progress bar), by key."""
    del root  # the cache key only
    return {}


def _stored(workspace: Workspace, key: tuple[Any, ...], compute: Callable[[], Any] | None) -> Any:
    """The stored result of (``key[0]``, run ``key[1]``, model checksum, ``key[2:]``); computed and kept
    (the oldest of 16 dropped) when missing and ``compute`` is given, else None."""
    root = str(workspace.root)
    store = _analysis_store(root)
    full = (key[0], key[1], _model_sha(root, key[1]), *key[2:])
    if full not in store and compute is not None:
        value = compute()
        while len(store) >= 16:
            store.pop(next(iter(store)))
        store[full] = value
    return store.get(full)


def influence_settings(users: int, method: str, k: int, seed: int = 0) -> dict[str, Any]:
    """The settings of one global influence computation (what the store and the session remember)."""
    return {"users": int(users), "method": str(method), "k": int(k), "seed": int(seed)}


def load_influence(workspace: Workspace, run_id: str, settings: dict[str, Any],
                   progress: Callable[[int, int], None] | None = None, compute: bool = True) -> Any:
    """The run's global influence (``core.explain.influence.report.InfluenceReport``, no ablation) for ``settings``, once per
    run and settings (``progress(done, total)`` is called while it computes); ``compute=False``: stored or None."""
    def run() -> Any:
        from core.explain.influence.report import global_influence
        from core.runs.influence import item_categories

        return global_influence(load_recommender(workspace, run_id), settings["users"], settings["method"],
                                k=settings["k"], seed=settings["seed"], ablation=False, run=run_id,
                                categories=item_categories(workspace, _dataset_stamp(workspace, run_id)[0]),
                                progress=progress)
    return _stored(workspace, ("influence", run_id, tuple(sorted(settings.items()))), run if compute else None)


def load_ablation(workspace: Workspace, run_id: str, progress: Callable[[int, int], None] | None = None,
                  compute: bool = True) -> Any:
    """The run's behavior ablation on its test split (``core.explain.influence.ablation.AblationResult``), once per run."""
    def run() -> Any:
        from core.explain.influence.ablation import behavior_ablation

        return behavior_ablation(load_recommender(workspace, run_id), "test", progress=progress)
    return _stored(workspace, ("ablation", run_id), run if compute else None)
