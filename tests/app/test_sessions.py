"""Two analysts on one server: what one picks, uploads or starts stays in their own browser session.

Two AppTest sessions of the same app run in one process, as two browser tabs of one
``streamlit run`` do: ``st.cache_resource`` is shared between them (the workspace and the run
handles), ``st.session_state`` is not.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from page_support import DATASET, TINY_FORM, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.runs import background as B
from core.runs.records import RUNNING, run_record, usable_runs
from core.runs.train import train_run
from core.store.workspace import Workspace

JOB_TIMEOUT_S = 240
LOG = b"user_id,item_id,timestamp,behavior\nu1,i1,1700000000,view\nu1,i2,1700000100,purchase\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> tuple[Path, str, str, str]:
    """(workspace, older run, newer run, tiny BERT folder) on the tiny dataset."""
    first = tiny_run(tmp_path_factory.mktemp("sessions"))
    time.sleep(1.1)  # run IDs and created_at carry the second: the second run is the newer one
    second = train_run(first.ws, DATASET, first.settings)
    return first.root, first.run_id, second, str(first.encoder)


def finish(at: AppTest, root: Path) -> None:
    """Stop this session's training worker (never leave a process training into a deleted workspace)."""
    run_id, ws = at.session_state.get("train_job"), Workspace(root)
    if run_id is not None and B.stop(ws, run_id, signal.SIGKILL):
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while run_record(ws, run_id)["status"] == RUNNING and time.monotonic() < deadline:
            time.sleep(0.1)


def test_one_analysts_run_upload_and_job_stay_out_of_the_other_session(
    open_app, two_runs: tuple[Path, str, str, str]
) -> None:
    root, older, newer, bert = two_runs
    alice = open_app(root, None, "pages/train.py")
    bob = AppTest.from_file(alice._script_path, default_timeout=120)
    bob.session_state["dataset"] = DATASET
    bob.run()
    try:
        # Alice picks the older run for her analysis pages.
        alice.selectbox(key="train_run_choice").set_value(older)
        alice.button(key="use_run").click().run()
        assert alice.session_state["run"] == older
        # Alice uploads a log and starts a training job.
        alice.switch_page("pages/data.py").run()
        alice.file_uploader(key="events_upload").set_value(("alice-log.csv", LOG, "text/csv")).run()
        assert len(alice.session_state["_uploads"]) == 1
        assert any(s.value == "Column mapping" for s in alice.subheader)
        alice.switch_page("pages/train.py").run()
        for key, value in TINY_FORM.items():
            alice.number_input(key=key).set_value(value)
        alice.text_input(key="train_encoder").set_value(bert)
        next(b for b in alice.button if b.label == "Train").click()
        alice.run()
        assert run_record(Workspace(root), alice.session_state["train_job"])["status"] in (RUNNING, "done")
        assert not alice.exception, alice.exception

        # Bob sees none of it: no picked run, the newest run on his analysis pages, no upload, no job.
        bob.switch_page("pages/train.py").run()
        assert not bob.exception and not bob.error, [e.value for e in bob.error]
        assert "run" not in bob.session_state and "train_job" not in bob.session_state
        assert any("No run is picked yet" in unescape(i.value) for i in bob.info)
        assert not any(b.key == "cancel_training" for b in bob.button)
        assert not bob.get("progress")
        bob.switch_page("pages/explain.py").run()
        newest = usable_runs(Workspace(root), DATASET)[0]  # runs are the workspace's: Alice's may be done by now
        assert newest in (newer, alice.session_state["train_job"])
        assert bob.selectbox(key="explain_run").value == newest != older
        assert bob.session_state["run"] == newest and alice.session_state["run"] == older
        bob.switch_page("pages/data.py").run()
        assert not bob.session_state["_uploads"] if "_uploads" in bob.session_state else True
        assert not any(s.value == "Column mapping" for s in bob.subheader)
        assert bob.file_uploader(key="events_upload").value is None
    finally:
        finish(alice, root)
