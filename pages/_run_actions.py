"""The Train page's run actions: resume a run that stopped without finishing, update a finished run on newer data
(a warm start, ``train --from``), retrain a run trained on data since deleted (a forgotten user), delete a run
(after a confirmation).

Widgets only: resuming starts a worker (:func:`core.runs.background.resume_training`), retraining a new run with
the same settings on the current data (:func:`core.runs.background.start_training`), deleting is
:func:`core.runs.lifecycle.delete_run`; both refuse a run whose process is still training it, and the
refusal is shown as the project's error. The buttons act in callbacks (before the page is drawn, so the
runs table already shows the outcome); what happened is kept in the session and shown once.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import BehaviorLensError
from core.runs.background import resume_training, start_training
from core.runs.lifecycle import delete_run
from core.runs.records import CANCELLED, FAILED, INTERRUPTED, PICKABLE, RUNNING, run_record
from core.runs.run import open_run
from core.runs.train import UPDATE_EPOCHS, update_settings
from core.runs.watch import has_checkpoint
from core.store.workspace import Workspace
from pages._shared import RUN_KEY, TRAIN_JOB_KEY, get_workspace, page_actor, plain

MANAGE_KEY = "train_manage_run"  # the run the actions apply to
PENDING_KEY = "train_delete_pending"  # the run whose deletion waits for a confirmation
MESSAGE_KEY = "train_run_message"  # (kind, text) of the last action, shown once
RESUMABLE = (INTERRUPTED, CANCELLED, FAILED)
DELETED_NOTE = (
    "a user's events were deleted after it was trained (behaviorlens forget), and its weights learned from them. "
    "Retrain it with the same settings on the current data, then delete this run."
)


def run_actions(runs: pd.DataFrame, busy: bool) -> None:
    """Pick a run; resume it (when it stopped without finishing) or delete it (confirmed first)."""
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is not None:
        (st.success if message[0] == "success" else st.error)(plain(message[1]))
    ids = runs["run_id"].tolist()
    if not ids:
        return
    st.subheader("Resume, update, retrain or delete a run")
    run_id = st.selectbox("Run to resume, update, retrain or delete", ids, key=MANAGE_KEY)
    row = runs.loc[runs["run_id"] == run_id].iloc[0]
    status, mark = row["status"], row.get("mark")
    ws = get_workspace()
    if isinstance(mark, str):
        st.warning(plain(f"Run {run_id} was {mark}: {DELETED_NOTE}"))
    left, right = st.columns(2)
    if isinstance(mark, str) and status != RUNNING:
        left.button("Retrain on the current data", key="retrain_run", on_click=_retrain, args=(run_id,), disabled=busy)
    if status in RESUMABLE:
        label = "Resume from its last checkpoint" if has_checkpoint(ws, run_id) else "Restart it from scratch"
        left.button(label, key="resume_run", on_click=_resume, args=(run_id,), disabled=busy)
        if status == INTERRUPTED:
            left.caption("Its process is gone: it stopped without finishing.")
    elif status == RUNNING:
        left.caption("It is training: cancel it, or wait for it to end, before deleting it.")
    right.button("Delete this run", key="delete_run", on_click=_ask_delete, args=(run_id,))
    if status in PICKABLE:
        update_form(ws, run_id, str(row["dataset"]), busy)
    pending = st.session_state.get(PENDING_KEY)
    if pending is not None:
        confirm(pending)


def update_form(ws: Workspace, run_id: str, dataset: str, busy: bool) -> None:
    """Update a finished run: a few epochs from its weights on a dataset with newer events (a new run)."""
    names = ws.dataset_names()
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.selectbox(
        "Update it on",
        names,
        index=names.index(dataset) if dataset in names else 0,
        key=f"update_dataset_{run_id}",
        help=f"A new run starts from this run's weights and settings and trains {UPDATE_EPOCHS} epochs on the "
        "dataset as it is now, mostly on the users with newer events: add the new log to this run's dataset on "
        "the Data page (Add the events to), then update on it. New items get their text embeddings and new ID "
        "rows; new users need nothing.",
    )
    right.button("Update this run", key="update_run", on_click=_update, args=(run_id,), disabled=busy)


def _update(run_id: str) -> None:
    """A new run from ``run_id``'s weights on the dataset picked beside the button (read now, not when drawn)."""
    ws, dataset = get_workspace(), str(st.session_state.get(f"update_dataset_{run_id}"))
    try:
        settings = update_settings(open_run(ws, run_id))
        launch = start_training(ws, dataset, settings, page_actor(), parent=run_id)
    except BehaviorLensError as exc:
        st.session_state[MESSAGE_KEY] = ("error", str(exc))
        return
    st.session_state[TRAIN_JOB_KEY] = launch.run_id  # the live panel follows it
    st.session_state[MESSAGE_KEY] = ("success", f"Updating {run_id} on dataset {dataset} as run {launch.run_id}.")


def confirm(run_id: str) -> None:
    """The confirmation step of a deletion."""
    st.warning(
        plain(f"Delete run {run_id}: its row and its folder (model, metrics, checkpoints)? This cannot be undone.")
    )
    left, right = st.columns(2)
    left.button("Yes, delete it", key="confirm_delete", type="primary", on_click=_delete, args=(run_id,))
    right.button("Keep it", key="keep_run", on_click=lambda: st.session_state.pop(PENDING_KEY, None))


def _ask_delete(run_id: str) -> None:
    st.session_state[PENDING_KEY] = run_id


def _delete(run_id: str) -> None:
    st.session_state.pop(PENDING_KEY, None)
    try:
        delete_run(get_workspace(), run_id, actor=page_actor())
    except BehaviorLensError as exc:
        st.session_state[MESSAGE_KEY] = ("error", str(exc))
        return
    for key in (RUN_KEY, TRAIN_JOB_KEY):
        if st.session_state.get(key) == run_id:
            del st.session_state[key]
    st.session_state.pop(MANAGE_KEY, None)
    st.session_state[MESSAGE_KEY] = ("success", f"Deleted run {run_id} and its folder.")


def _resume(run_id: str) -> None:
    try:
        resume_training(get_workspace(), run_id, page_actor())
    except BehaviorLensError as exc:
        st.session_state[MESSAGE_KEY] = ("error", str(exc))
        return
    st.session_state[TRAIN_JOB_KEY] = run_id  # the live panel follows it


def _retrain(run_id: str) -> None:
    """A new run with ``run_id``'s settings on its dataset as it is now (without the forgotten users)."""
    ws = get_workspace()
    try:
        record = run_record(ws, run_id)
        launch = start_training(ws, record["dataset"], dict(record["config"].get("settings") or {}), page_actor())
    except BehaviorLensError as exc:
        st.session_state[MESSAGE_KEY] = ("error", str(exc))
        return
    st.session_state[TRAIN_JOB_KEY] = launch.run_id  # the live panel follows it
    st.session_state[MESSAGE_KEY] = ("success", f"Retraining {run_id}'s settings as run {launch.run_id}.")
