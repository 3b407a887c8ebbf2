"""What an analysis page shows while its dataset has no usable run: the training under way, else how to get one.

A run of the dataset that is training (the demo run ``behaviorlens sample --train`` starts, one
started on the Train page or by ``behaviorlens train``) is shown with its progress in a fragment that
redraws itself every :data:`POLL_SECONDS`; when the run ends it reruns the whole page, which then finds
the run and fills in. The state comes from :func:`core.runs.watch.training_state` (plain data, read from
the run's records and files: a worker's live snapshot, else its epoch progress). A run whose process
is gone reads ``interrupted`` and is said to be resumable on the Train page.
"""

from __future__ import annotations

import streamlit as st

from core.errors import BehaviorLensError
from core.runs.records import INTERRUPTED, RUNNING
from core.runs.watch import Training, progress_text, training_state
from core.store.workspace import Workspace
from pages._shared import get_workspace, plain, show_error

POLL_SECONDS = 2.0
NO_RUN = "No trained run of this dataset yet: train one on the Train page."


def no_usable_run(workspace: Workspace, dataset: str | None) -> None:
    """Call where a page finds no usable run of ``dataset``: the training under way (polled), or why there is none."""
    state = None if dataset is None else training_state(workspace, dataset)
    if state is None:
        st.info(NO_RUN)
    elif state.status == RUNNING:
        st.fragment(run_every=POLL_SECONDS)(training_panel)(dataset, state.run_id)
    else:
        ended_badly(state)


def training_panel(dataset: str, run_id: str) -> None:
    """The waiting message and progress bar of one training run (a fragment): a full rerun once it ends."""
    try:
        state = training_state(get_workspace(), dataset)
    except BehaviorLensError as exc:
        show_error(exc)
        return
    if state is None or state.run_id != run_id or state.status != RUNNING:
        st.rerun()  # the whole page: it finds the finished run, or says what happened
    fraction, text = progress_text(state.progress)
    what = "the demo model" if state.demo else "a model"
    st.info(
        plain(f"Training {what} on dataset {dataset} (run {run_id})…")
        + " This page fills in by itself when the training is done."
    )
    st.progress(min(1.0, max(0.0, fraction)), text=plain(text))


def ended_badly(state: Training) -> None:
    """A training whose process is gone (interrupted: resumable), or that failed in its worker, with its log."""
    log = f" Its log: {state.log}." if state.log is not None else ""
    if state.status == INTERRUPTED:
        message = f"The training of run {state.run_id} stopped without finishing (its process is gone).{log}"
        advice = " Resume it under Saved runs on the Train page, or train another there"
    else:
        message = f"The background training of run {state.run_id} failed.{log}"
        advice = " Train one on the Train page"
    st.warning(plain(message) + advice + ", or run `behaviorlens sample --train` again for the sample.")
