"""The Train page's live panel: the progress, cancel button, outcome and curves of this session's latest run.

Widgets only. The run trains in a worker process (``core.runs.background``) that publishes its
progress in the run folder; the panel reads it (``core.runs.watch.live_snapshot``), so it shows the
same after a page reload or a server restart. It is a fragment that reruns itself every
:data:`POLL_SECONDS` while the run trains; when the run ends it asks for one full rerun, which
refreshes the runs table and stops the polling. A run whose worker is gone reads ``interrupted``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.errors import NotFoundError
from core.model.privacy import privacy_label
from core.runs import background as B
from core.runs.jobs import ENCODING, TRAINING
from core.runs.records import CANCELLED, DONE, INTERRUPTED, RUNNING
from core.runs.watch import STARTING, live_snapshot
from core.store.workspace import Workspace
from core.views import charts
from pages._shared import TRAIN_JOB_KEY, get_workspace, plain

POLL_SECONDS = 1.0


def session_snapshot(ws: Workspace) -> dict[str, Any] | None:
    """What the worker of this session's latest run published; None when there is none (or it was deleted)."""
    run_id = st.session_state.get(TRAIN_JOB_KEY)
    if run_id is None:
        return None
    try:
        return live_snapshot(ws, run_id)
    except NotFoundError:
        del st.session_state[TRAIN_JOB_KEY]
        return None


def live_section(snap: dict[str, Any] | None) -> None:
    """This session's latest run: polled every second while it trains, drawn once when over."""
    if snap is None:
        return
    polling = snap["status"] == RUNNING
    st.fragment(run_every=POLL_SECONDS if polling else None)(live_panel)(snap["run_id"], polling)


def live_panel(run_id: str, polling: bool) -> None:
    """Progress bar, cancel button, outcome and curves of one run (a fragment)."""
    ws = get_workspace()
    try:
        snap = live_snapshot(ws, run_id)
    except NotFoundError:  # deleted meanwhile
        return
    if polling and snap["status"] != RUNNING:
        st.rerun()  # the whole page: refresh the runs table and stop polling
    st.header("Training")
    st.caption(plain(f"Run {run_id} on dataset {snap['dataset']}"))
    progress_bar(snap)
    if snap["status"] == RUNNING:
        if st.button("Cancel training", key="cancel_training", disabled=snap["cancel_requested"]):
            B.cancel_training(ws, run_id)
            snap = live_snapshot(ws, run_id)
        if snap["cancel_requested"]:
            st.info("Cancelling: training stops before its next step and the run is saved as cancelled.")
    else:
        outcome(snap)
    curves(snap)


def progress_bar(snap: dict[str, Any]) -> None:
    """One bar: encoding progress first, then the share of the planned epochs."""
    if snap["status"] == RUNNING and snap["phase"] in (STARTING, ENCODING):
        done, total = snap["encode_done"], snap["encode_total"]
        text = f"Encoding item texts: {done:,}/{total:,}" if total else "Loading the data and the encoder…"
        st.progress(done / total if total else 0.0, text=text)
        return
    text = f"Epoch {snap['epoch']}/{snap['epochs']}"
    if snap["status"] == RUNNING and snap["phase"] == TRAINING:
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
        private = privacy_label(snap["privacy"])
        st.success(plain(f"Run {run} finished: best epoch {best}{summary}" + (f"; {private}." if private else ".")))
    elif snap["status"] == CANCELLED:
        st.warning(
            plain(f"Run {run} was cancelled after {len(snap['history'])} epoch(s); the best model so far is saved.")
        )
    elif snap["status"] == INTERRUPTED:
        st.warning(
            plain(f"Run {run} stopped without finishing after {snap['epoch']} epoch(s): its process is gone.")
            + " Resume it under Saved runs."
        )
    elif snap["error"] is not None:
        st.error(plain(f"Training failed: {snap['error']}"))
    else:
        crash = snap["crash"] or "its process ended without saying why"
        st.error(plain(f"Training stopped by an unexpected error ({crash}); the run's train.log has the traceback."))


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
