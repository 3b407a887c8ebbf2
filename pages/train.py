"""The Train page: settings form, live training panel (progress, curves, cancel), saved runs.

Widgets and layout only: training runs in a background thread owned by
``core.runs.jobs`` (the session keeps just the run ID); runs are listed by
``core.runs.records``; the curves are ``core.views.charts``. The live panel is a fragment that
reruns itself every second while the job trains, so the rest of the page stays
put and responsive; when the job ends it asks for one full rerun, which
refreshes the runs table and stops the polling.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.errors import BehaviorLensError, NotFoundError
from core.runs import jobs as J
from core.runs.records import CANCELLED, DONE, METRIC_KEYS, PICKABLE, RUNNING, list_runs, run_record
from core.store.workspace import Workspace
from core.views import charts
from pages._shared import DATASET_KEY, RUN_KEY, TRAIN_JOB_KEY, get_workspace, plain, route_through_frame, show_error

POLL_SECONDS = 1.0
DEVICES = ["auto", "cpu", "cuda"]
RUN_CHOICE = "train_run_choice"


# -- the run the other pages use ---------------------------------------------------------
def current_run_note(ws: Workspace) -> None:
    """Which run the analysis pages use (``st.session_state["run"]``)."""
    run = st.session_state.get(RUN_KEY)
    if run is None:
        st.info("No run is picked yet: the other pages use the run you pick under Saved runs.")
        return
    try:
        record = run_record(ws, run)
    except NotFoundError:
        st.warning(plain(f"The picked run {run} is not in this workspace; pick another under Saved runs."))
        return
    st.success(plain(f"Run used by the other pages: {run} (dataset {record['dataset']}, {record['status']})"))


# -- 1. settings -------------------------------------------------------------------------
def settings_form(ws: Workspace, busy: bool) -> tuple[str, dict[str, Any]] | None:
    """The settings form; (dataset, Recommender settings) when Train is pressed."""
    names = ws.dataset_names()
    if not names:
        st.info("No dataset yet: upload one on the Data page.")
        return None
    chosen = st.session_state.get(DATASET_KEY)
    with st.form("train_form"):
        dataset = st.selectbox(
            "Dataset to train on",
            names,
            index=names.index(chosen) if chosen in names else 0,
            key=f"train_dataset_{chosen}",
        )  # follows the sidebar's choice
        encoder = st.text_input(
            "Encoder model folder (empty: the bundled all-MiniLM-L6-v2)",
            key="train_encoder",
            placeholder="/path/to/a/local/hugging-face/model",
        )
        model = model_fields()
        train = training_fields()
        protocol = protocol_fields(ws, chosen if chosen in names else names[0])
        device = device_field()
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if busy:
        st.caption("A training of this session is running: cancel it or wait for it to end to start another.")
    if not submitted or busy:
        return None
    settings = {"encoder": encoder.strip() or None, "device": device, "model": model, "train": train, **protocol}
    return dataset, settings


def protocol_fields(ws: Workspace, dataset: str) -> dict[str, Any]:
    """The evaluation protocol: earlier items as candidates or not, which event is held out, and when it is asked."""
    cols = st.columns(3)
    seen = cols[0].radio(
        "The user's earlier items",
        ["auto (from the repeat rate)", "excluded", "kept as candidates"],
        horizontal=True,
        key="train_exclude_seen",
        help="Rating data has one event per user and item: exclude earlier items. In e-commerce logs "
        "buying what you viewed is the main signal: keep them. Auto decides from the dataset's repeat rate.",
    )
    try:
        behaviors = sorted(ws.dataset(dataset).report.get("behaviors", {}))
    except BehaviorLensError:
        behaviors = []
    target = cols[1].selectbox(
        "Held-out event",
        ["last event (any behavior)"] + behaviors,
        key="train_target",
        help="Hold out each user's last event, or their last event of one behavior.",
    )
    asked = cols[2].radio(
        "Held-out events are asked",
        ["at the stand-in time", "at their own time (known)"],
        key="train_request_time",
        help="Stand-in: the last history event plus the dataset's typical next-visit gap, as a live request is; "
        "nothing of the held-out event is known. Own time: only where the request time is truly known at "
        'serving; every figure is then labelled "time-aware: target time known".',
    )
    exclude = {"excluded": True, "kept as candidates": False}.get(str(seen))
    return {
        "exclude_seen": exclude,
        "target_behavior": None if target not in behaviors else str(target),
        "request_time": "actual" if str(asked).startswith("at their own") else "standin",
    }


def model_fields() -> dict[str, int]:
    """Model size: width, attention heads, layers, history length."""
    cols = st.columns(4)
    return {
        "d_model": cols[0].number_input("Model width (d_model)", 8, 1024, 64, step=8, key="train_d_model"),
        "n_heads": cols[1].number_input("Attention heads", 1, 16, 2, key="train_n_heads"),
        "n_layers": cols[2].number_input("Layers", 1, 12, 2, key="train_n_layers"),
        "max_len": cols[3].number_input("Max history length", 2, 2000, 200, key="train_max_len"),
    }


def training_fields() -> dict[str, Any]:
    """Epochs, seed and the loss weights (fixed, or learned by uncertainty weighting)."""
    cols = st.columns(4)
    epochs = cols[0].number_input("Epochs", 1, 1000, 20, key="train_epochs")
    seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
    w_engagement = cols[2].number_input("Engagement loss weight", 0.0, 100.0, 1.0, step=0.1, key="train_w_engagement")
    w_rating = cols[3].number_input("Rating loss weight", 0.0, 100.0, 0.5, step=0.1, key="train_w_rating")
    learned = st.checkbox(
        "Learned loss weights (uncertainty): ignore the two weights above", key="train_learned_weights"
    )
    weights: str | list[float] = "uncertainty" if learned else [float(w_engagement), float(w_rating)]
    return {"epochs": int(epochs), "seed": int(seed), "loss_weights": weights}


def device_field() -> str:
    """auto / cpu / cuda; cuda is offered only when a GPU is there."""
    has_cuda = J.cuda_available()
    device = st.radio("Device", DEVICES if has_cuda else DEVICES[:2], horizontal=True, key="train_device")
    if not has_cuda:
        st.caption("cuda is not offered: no CUDA GPU is available to this server, so training runs on the CPU.")
    return str(device)


def start_training(ws: Workspace, dataset: str, settings: dict[str, Any]) -> None:
    """Start a background job, remember its run ID in the session, redraw the page."""
    try:
        job = J.start(str(ws.root), dataset, settings)
    except BehaviorLensError as exc:
        show_error(exc)
        return
    st.session_state[TRAIN_JOB_KEY] = job.run_id
    st.rerun()


# -- 2. the live panel ----------------------------------------------------------------------
def live_section() -> None:
    """This session's latest job: polled every second while it trains, drawn once when over."""
    job = J.get_job(st.session_state.get(TRAIN_JOB_KEY))
    if job is None:
        return
    polling = job.is_running()
    st.fragment(run_every=POLL_SECONDS if polling else None)(live_panel)(job.run_id, polling)


def live_panel(run_id: str, polling: bool) -> None:
    """Progress bar, cancel button, outcome and curves of one job (a fragment)."""
    job = J.get_job(run_id)
    if job is None:
        return
    snap = job.snapshot()
    if polling and snap["status"] != RUNNING:
        st.rerun()  # the whole page: refresh the runs table and stop polling
    st.header("Training")
    st.caption(plain(f"Run {run_id} on dataset {snap['dataset']}"))
    progress_bar(snap)
    if snap["status"] == RUNNING:
        if st.button("Cancel training", key="cancel_training", disabled=snap["cancel_requested"]):
            job.cancel()
            snap = job.snapshot()
        if snap["cancel_requested"]:
            st.info("Cancelling: training stops before its next step and the run is saved as cancelled.")
    else:
        outcome(snap)
    curves(snap)


def progress_bar(snap: dict[str, Any]) -> None:
    """One bar: encoding progress first, then the share of the planned epochs."""
    if snap["status"] == RUNNING and snap["phase"] in (J.STARTING, J.ENCODING):
        done, total = snap["encode_done"], snap["encode_total"]
        text = f"Encoding item texts: {done:,}/{total:,}" if total else "Loading the data and the encoder…"
        st.progress(done / total if total else 0.0, text=text)
        return
    text = f"Epoch {snap['epoch']}/{snap['epochs']}"
    if snap["status"] == RUNNING and snap["phase"] == J.TRAINING:
        text += f", step {snap['step']}/{snap['steps']}"
    elif snap["status"] == RUNNING:
        text += ": evaluating and saving…"
    if snap["loss"] is not None:
        text += f", loss {snap['loss']:.4f}"
    st.progress(snap["fraction"], text=f"{text} ({snap['elapsed']:.0f} s)")


def outcome(snap: dict[str, Any]) -> None:
    """How the job ended."""
    run, best = snap["run_id"], snap["best_epoch"]
    if snap["status"] == DONE:
        last = snap["history"][-1] if snap["history"] else {}
        ndcg = last.get("valid_NDCG@10")
        summary = f", last valid NDCG@10 {ndcg:.4f}" if isinstance(ndcg, float) else ""
        st.success(plain(f"Run {run} finished: best epoch {best}{summary}."))
    elif snap["status"] == CANCELLED:
        st.warning(
            plain(f"Run {run} was cancelled after {len(snap['history'])} epoch(s); the best model so far is saved.")
        )
    elif snap["error"] is not None:
        st.error(plain(f"Training failed: {snap['error']}"))
    else:
        st.error(plain(f"Training stopped by an unexpected error ({snap['crash']}); the server log has the traceback."))


def curves(snap: dict[str, Any]) -> None:
    """Live loss and validation metric curves."""
    if not snap["step_losses"] and not snap["history"]:
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.training_loss(snap["step_losses"], snap["history"]), key="chart_train_loss")
    if snap["history"]:
        right.plotly_chart(charts.validation_metrics(snap["history"]), key="chart_valid_metrics")
    else:
        right.caption("Validation metrics appear after the first epoch.")


# -- 3. saved runs --------------------------------------------------------------------------
def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Run, dataset, status, time, then test and valid metrics."""
    first = ["test_HR@10", "test_NDCG@10"]  # the model's headline, then the bars beside it
    bars = [f"test_{name}_{k}" for name in ("recent_items", "popularity") for k in ("HR@10", "NDCG@10")]
    rest = [f"{split}_{k}" for split in ("test", "valid") for k in METRIC_KEYS if f"{split}_{k}" not in first]
    wanted = ["run_id", "dataset", "status", "created_at", *first, *bars, *rest, "protocol"]
    cols = [c for c in wanted if c in runs]
    return runs[cols]


def use_picked_run() -> None:
    """Button callback: the picked run becomes the one the other pages use."""
    st.session_state[RUN_KEY] = st.session_state.get(RUN_CHOICE)


def runs_section(ws: Workspace) -> None:
    """Saved runs with their metrics, and the picker of the run the other pages use."""
    st.header("Saved runs")
    runs = list_runs(ws)
    if runs.empty:
        st.caption("No saved run yet: train one above.")
        return
    st.dataframe(runs_table(runs), hide_index=True)
    st.caption(
        "test_recent_items_* and test_popularity_* are the bars beside each model, on the same split and "
        "protocol: the most frequent items, and the user's most recent distinct items (then popular ones; "
        "empty where earlier items are excluded)."
    )
    ids = runs.loc[runs["status"].isin(PICKABLE), "run_id"].tolist()
    if not ids:
        st.caption("No finished run yet: a run can be picked once it is done or cancelled.")
        return
    current = st.session_state.get(RUN_KEY)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.selectbox("Run for the other pages", ids, index=ids.index(current) if current in ids else 0, key=RUN_CHOICE)
    right.button("Use this run", key="use_run", on_click=use_picked_run)


def main() -> None:
    """The page: current run, settings form, live panel, saved runs; project errors shown."""
    route_through_frame()
    st.title("Train")
    try:
        ws = get_workspace()
        current_run_note(ws)
        job = J.get_job(st.session_state.get(TRAIN_JOB_KEY))
        request = settings_form(ws, busy=job is not None and job.is_running())
        if request is not None:
            start_training(ws, *request)
        live_section()
        runs_section(ws)
    except BehaviorLensError as exc:
        show_error(exc)


main()
