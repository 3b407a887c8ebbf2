"""The Train page: settings form, live training panel (progress, curves, cancel), saved runs.

Widgets and layout only: every training runs in a worker process of its own
(``core.runs.background``: its seed, random state and thread count are its alone), which
publishes its progress in the run folder; the session keeps just the run ID and the live panel
(``pages/_training_panel.py``) reads what the worker published. Runs are listed by
``core.runs.records`` (a run whose process is gone reads ``interrupted``) and resumed or deleted
under Saved runs (``pages/_run_actions.py``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.errors import BehaviorLensError, NotFoundError
from core.runs import background as B
from core.runs import jobs as J
from core.runs.records import BASELINE_KEYS, METRIC_KEYS, NEW_ITEMS_BARS, PICKABLE, RUNNING, list_runs, run_record
from core.store.workspace import Workspace
from pages._access import analyst_only
from pages._encoder_fields import encoder_fields
from pages._run_actions import run_actions
from pages._shared import (
    DATASET_KEY,
    RUN_KEY,
    TRAIN_JOB_KEY,
    get_workspace,
    page_actor,
    plain,
    route_through_frame,
    show_error,
)
from pages._training_panel import live_section, session_snapshot

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
def settings_form(ws: Workspace, busy: bool) -> tuple[str, dict[str, Any], int] | None:
    """The settings form; (dataset, Recommender settings, processes) when Train is pressed."""
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
        encoder = encoder_fields()
        model = model_fields()
        train = training_fields()
        train.update(privacy_fields())
        protocol = protocol_fields(ws, chosen if chosen in names else names[0])
        device, processes = device_field()
        submitted = st.form_submit_button("Train", type="primary", disabled=busy)
    if busy:
        st.caption("A training of this session is running: cancel it or wait for it to end to start another.")
    if not submitted or busy:
        return None
    if train.get("privacy") and protocol["exclude_seen"] is None:
        st.error(
            "With differential privacy, choose whether the user's earlier items are excluded or kept as "
            "candidates: auto decides from the users' repeat rate, which is not private."
        )
        return None
    settings = {"encoder": encoder, "device": device, "model": model, "train": train, **protocol}
    return dataset, settings, processes


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
    held_out = st.number_input(
        "Share of items held out of training (new items)",
        0.0,
        0.9,
        0.0,
        step=0.05,
        key="train_cold_items",
        help="Drawn with the seed, these items' events leave training entirely; the run is then also scored on "
        "each user's last event on one of them (the new-items protocol), which only the item text can reach. "
        "0: none held out.",
    )
    exclude = {"excluded": True, "kept as candidates": False}.get(str(seen))
    return {
        "exclude_seen": exclude,
        "target_behavior": None if target not in behaviors else str(target),
        "request_time": "actual" if str(asked).startswith("at their own") else "standin",
        **({"cold_items": float(held_out)} if held_out else {}),
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


def privacy_fields() -> dict[str, Any]:
    """User-level differential privacy (DP-SGD): off, or the budget epsilon, delta and each user's gradient bound."""
    on = st.checkbox(
        "Train with differential privacy (user level)",
        key="train_private",
        help="DP-SGD: each step samples users at random, clips each user's gradient and adds Gaussian noise, so the "
        "model reveals little about any one user. Every epoch runs and the last is kept, the rating refit is "
        "off, and the epsilon actually spent is stored with the run.",
    )
    cols = st.columns(3)
    epsilon = cols[0].number_input("Privacy budget ε", 0.01, 100.0, 8.0, step=1.0, key="train_epsilon")
    delta = cols[1].number_input(
        "δ (0: 1 / number of users)", 0.0, 0.5, 0.0, step=1e-4, format="%.2e", key="train_delta"
    )
    clip = cols[2].number_input("Gradient bound per user", 0.001, 100.0, 1.0, step=0.1, key="train_clip")
    if not on:
        return {}
    return {"privacy": {"epsilon": float(epsilon), "delta": float(delta) or None, "max_grad_norm": float(clip)}}


def device_field() -> tuple[str, int]:
    """auto / cpu / cuda (cuda offered only when a GPU is there), and the data-parallel processes."""
    has_cuda = J.cuda_available()
    left, right = st.columns([3, 1])
    device = left.radio("Device", DEVICES if has_cuda else DEVICES[:2], horizontal=True, key="train_device")
    processes = right.number_input(
        "Processes",
        1,
        64,
        1,
        key="train_processes",
        help="Train in this many data-parallel processes on this machine (torch.distributed: gloo on the CPU, one "
        "GPU each with NCCL); each computes its share of every batch, and the run is the same as in one process.",
    )
    if not has_cuda:
        st.caption("cuda is not offered: no CUDA GPU is available to this server, so training runs on the CPU.")
    return str(device), int(processes)


def start_training(ws: Workspace, dataset: str, settings: dict[str, Any], processes: int = 1) -> None:
    """Start a worker process (``processes`` of them), remember its run ID in the session, redraw the page."""
    try:
        launch = B.start_training(ws, dataset, settings, page_actor(), processes=processes)
    except BehaviorLensError as exc:
        show_error(exc)
        return
    st.session_state[TRAIN_JOB_KEY] = launch.run_id
    st.rerun()


# -- 3. saved runs (2. the live panel: pages/_training_panel.py) -------------------------------------
def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Run, dataset, status, mark (such as trained on data since deleted), time, then test and valid metrics,
    the protocol, and the new-items figures of a run trained with items held out (with their protocol)."""
    first = ["test_HR@10", "test_NDCG@10"]  # the model's headline, then the bars beside it
    bars = [f"test_{name}_{k}" for name in ("recent_items", "popularity") for k in ("HR@10", "NDCG@10")]
    rest = [f"{split}_{k}" for split in ("test", "valid") for k in METRIC_KEYS if f"{split}_{k}" not in first]
    new = [f"new_items_{name}{k}" for name in ("", *(f"{b}_" for b in NEW_ITEMS_BARS)) for k in BASELINE_KEYS]
    wanted = ["run_id", "dataset", "status", "mark", "parent", "created_at", *first, "dp_epsilon", *bars, *rest]
    wanted += ["protocol", *new, "new_items_protocol"]
    cols = [c for c in wanted if c in runs]
    return runs[cols]


def use_picked_run() -> None:
    """Button callback: the picked run becomes the one the other pages use."""
    st.session_state[RUN_KEY] = st.session_state.get(RUN_CHOICE)


def runs_section(ws: Workspace, busy: bool) -> None:
    """Saved runs with their metrics, the picker of the run the other pages use, and the run actions."""
    st.header("Saved runs")
    runs = list_runs(ws)
    if runs.empty:
        st.caption("No saved run yet: train one above.")
        return
    st.dataframe(runs_table(runs), hide_index=True)
    st.caption(
        "parent: the run an update started from (its lineage). "
        "dp_epsilon: the privacy budget a run trained with differential privacy spent (empty: trained without). "
        "test_recent_items_* and test_popularity_* are the bars beside each model, on the same split and "
        "protocol: the most frequent items, and the user's most recent distinct items (then popular ones; "
        "empty where earlier items are excluded). new_items_*: for a run trained with items held out of training, "
        "each user's last event on one of them, labelled by new_items_protocol, beside a popularity and a random "
        "ranking under the same protocol (popularity cannot rank items it never saw)."
    )
    ids = runs.loc[runs["status"].isin(PICKABLE), "run_id"].tolist()
    if not ids:
        st.caption("No finished run yet: a run can be picked once it is done or cancelled.")
    else:
        current = st.session_state.get(RUN_KEY)
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        index = ids.index(current) if current in ids else 0
        left.selectbox("Run for the other pages", ids, index=index, key=RUN_CHOICE)
        right.button("Use this run", key="use_run", on_click=use_picked_run)
    run_actions(runs, busy)


def main() -> None:
    """The page: current run, settings form, live panel, saved runs; project errors shown."""
    route_through_frame()
    st.title("Train")
    if not analyst_only("open the Train page"):
        return
    try:
        ws = get_workspace()
        current_run_note(ws)
        snap = session_snapshot(ws)
        busy = snap is not None and snap["status"] == RUNNING
        request = settings_form(ws, busy=busy)
        if request is not None:
            start_training(ws, *request)
        live_section(snap)
        runs_section(ws, busy)
    except BehaviorLensError as exc:
        show_error(exc)


main()
