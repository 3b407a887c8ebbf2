"""The Train page: settings form -> background training -> live panel -> saved runs -> run picker.

A tiny generated dataset (40 users, 30 items) is ingested into the test's
workspace and picked in the sidebar; the form sets a tiny model (width 16, one
layer, history 20, one epoch) and the default encoder (the bundled MiniLM).
Training runs in a worker process (``core.runs.background``); the test reruns the app, as the
live panel's fragment does in a browser, until the panel shows no Cancel button. Runs are resumed
and deleted under Saved runs (a deletion is confirmed first).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from page_support import APP, TINY_FORM, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import NotFoundError
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.model.encoder_spec import ADAPTER_FILE
from core.runs import background as B
from core.runs import jobs as J
from core.runs.forget import DATA_DELETED, forget_user
from core.runs.owner import claim
from core.runs.records import DONE, RUNNING, list_runs, run_record, set_run
from core.runs.run import open_run
from core.store.workspace import Workspace

TRAIN_PAGE = "pages/train.py"
DATASET = "tiny"
JOB_TIMEOUT_S = 240


@pytest.fixture()
def page(server_mode: None, fresh_caches: None, _isolated_workspace_env: Path, training_data_dir: Path) -> AppTest:
    """The Train page with the tiny dataset picked in the sidebar, caches cleared around it."""
    ingest(
        Workspace(_isolated_workspace_env),
        training_data_dir / "events.csv",
        training_data_dir / "items.csv",
        IngestOptions(name=DATASET),
    )
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.selectbox[0].set_value(DATASET).run()
    at.switch_page(TRAIN_PAGE).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    yield at
    ws = Workspace(_isolated_workspace_env)
    for run_id in list_runs(ws)["run_id"] if len(list_runs(ws)) else []:
        if B.stop(ws, run_id, signal.SIGKILL):  # never leave a worker training into a deleted workspace
            deadline = time.monotonic() + 30
            while run_record(ws, run_id)["status"] == RUNNING and time.monotonic() < deadline:
                time.sleep(0.1)


def fill_and_train(at: AppTest, encoder: str = "", **fields: int) -> AppTest:
    """Set form fields by widget key, then press Train."""
    for key, value in {**TINY_FORM, **fields}.items():
        at.number_input(key=key).set_value(value)
    at.text_input(key="train_encoder").set_value(encoder)
    next(b for b in at.button if b.label == "Train").click()
    return at.run()


def training(at: AppTest) -> bool:
    return any(b.key == "cancel_training" for b in at.button)


def wait_until_finished(at: AppTest) -> AppTest:
    """Rerun the app until the live panel shows no Cancel button (the job has ended)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while training(at):
        assert not at.exception, [e.value for e in at.exception]
        assert time.monotonic() < deadline, f"training still running after {JOB_TIMEOUT_S}s"
        time.sleep(0.5)
        at.run()
    return at


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(el.proto.spec)["layout"]["title"]["text"] for el in at.get("plotly_chart")]


def runs_frame(at: AppTest):
    return next(d.value for d in at.dataframe if "run_id" in d.value.columns)


def test_train_page_renders_the_form(page: AppTest) -> None:
    assert [t.value for t in page.title] == ["Train"]
    assert page.selectbox(key=f"train_dataset_{DATASET}").value == DATASET  # follows the sidebar
    assert page.number_input(key="train_d_model").value == 64
    assert page.radio(key="train_device").options == (
        ["auto", "cpu", "cuda"] if J.cuda_available() else ["auto", "cpu"]
    )
    assert any("No run is picked yet" in unescape(i.value) for i in page.info)
    assert any("No saved run yet" in unescape(c.value) for c in page.caption)
    assert not page.get("progress")


def test_tiny_training_shows_progress_then_lists_the_run(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = fill_and_train(page)
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.session_state["train_job"]
    bars = at.get("progress")
    assert len(bars) == 1 and re.match(r"(Loading|Encoding|Epoch)", bars[0].proto.text), bars[0].proto.text
    assert next(b for b in at.button if b.label == "Train").disabled  # one job per session at a time
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(unescape(s.value).startswith(f"Run {run_id} finished: best epoch 1") for s in at.success)
    assert at.get("progress")[0].proto.value == 100
    assert chart_titles(at) == ["Training loss", "Validation metrics"]
    runs = runs_frame(at)
    row = runs[runs["run_id"] == run_id].iloc[0]
    assert row["status"] == "done" and row["dataset"] == DATASET
    assert {"test_HR@10", "test_NDCG@10", "valid_NDCG@10"} <= set(runs.columns)
    settings = run_record(Workspace(_isolated_workspace_env), run_id)["config"]["settings"]
    assert settings["encoder"] is None and settings["device"] == "auto"
    assert settings["model"] == {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 20}
    assert settings["train"] == {"epochs": 1, "seed": 0, "loss_weights": [1.0, 0.5]}
    # pick it for the other pages
    assert "run" not in at.session_state
    at.selectbox(key="train_run_choice").set_value(run_id)
    next(b for b in at.button if b.label == "Use this run").click()
    at.run()
    assert not at.exception
    assert at.session_state["run"] == run_id
    assert any(
        unescape(s.value).startswith(f"Run used by the other pages: {run_id} (dataset {DATASET}, done)")
        for s in at.success
    )


def test_cancel_from_the_page(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = fill_and_train(page, train_epochs=500)
    run_id = at.session_state["train_job"]
    at.button(key="cancel_training").click().run()  # before the first step: MiniLM is still loading
    assert any("Cancelling" in unescape(i.value) for i in at.info)
    at = wait_until_finished(at)
    assert not at.exception and not at.error
    assert any(unescape(w.value).startswith(f"Run {run_id} was cancelled") for w in at.warning)
    assert run_record(Workspace(_isolated_workspace_env), run_id)["status"] == "cancelled"
    runs = runs_frame(at)
    assert runs.loc[runs["run_id"] == run_id, "status"].tolist() == ["cancelled"]


def test_project_errors_of_the_job_are_shown(page: AppTest, tmp_path: Path, _isolated_workspace_env: Path) -> None:
    page.checkbox(key="train_learned_weights").check()
    at = wait_until_finished(fill_and_train(page, encoder=str(tmp_path / "no-such-model")))
    assert not at.exception
    assert len(at.error) == 1
    message = unescape(at.error[0].value)
    assert message.startswith("Training failed: encoder model path") and "no-such-model" in message
    record = run_record(Workspace(_isolated_workspace_env), at.session_state["train_job"])
    assert record["status"] == "failed"
    assert record["config"]["settings"]["train"]["loss_weights"] == "uncertainty"
    assert "train_run_choice" not in [s.key for s in at.selectbox]  # nothing to pick: the run has no model


def test_protocol_choices_reach_the_run(page: AppTest, _isolated_workspace_env: Path) -> None:
    page.radio(key="train_exclude_seen").set_value("excluded")
    page.selectbox(key="train_target").set_value("purchase")
    page.radio(key="train_request_time").set_value("at their own time (known)")
    at = wait_until_finished(fill_and_train(page))
    assert not at.exception and not at.error, [e.value for e in at.error]
    record = run_record(Workspace(_isolated_workspace_env), at.session_state["train_job"])
    settings = record["config"]["settings"]
    assert settings["exclude_seen"] is True and settings["target_behavior"] == "purchase"
    assert settings["request_time"] == "actual" and record["metrics"]["request_time"] == "actual"
    assert record["metrics"]["protocol"] == (
        "full ranking, earlier items of any behavior excluded, target = last purchase, leave-last-out, "
        "time-aware: target time known"
    )
    assert runs_frame(at)["protocol"].tolist() == [record["metrics"]["protocol"]]


def test_a_held_out_share_reaches_the_run_and_its_new_items_figures_are_listed(
    page: AppTest, _isolated_workspace_env: Path
) -> None:
    assert page.number_input(key="train_cold_items").value == 0.0  # default: nothing held out
    at = wait_until_finished(fill_and_train(page, train_cold_items=0.2))
    assert not at.exception and not at.error, [e.value for e in at.error]
    record = run_record(Workspace(_isolated_workspace_env), at.session_state["train_job"])
    assert record["config"]["settings"]["cold_items"] == 0.2
    new = record["metrics"]["new_items"]
    assert new["held_out_items"] == 6 and new["users"] > 0  # a fifth of the 30 items
    row = runs_frame(at).iloc[0]
    assert row["new_items_protocol"] == new["label"] and "new items: 20% of items held out of training" in new["label"]
    assert row["new_items_NDCG@10"] == pytest.approx(new["test"]["NDCG@10"])
    assert row["new_items_random_HR@10"] == pytest.approx(new["baselines"]["random"]["HR@10"])
    assert "new_items_popularity_HR@10" in row
    assert any("new_items_*" in unescape(c.value) for c in at.caption)


def test_a_private_run_from_the_page_shows_the_epsilon_it_spent(page: AppTest, _isolated_workspace_env: Path) -> None:
    page.checkbox(key="train_private").check()
    page.number_input(key="train_epsilon").set_value(4.0)
    at = fill_and_train(page)  # earlier items on "auto": decided from the users' repeat rate, refused
    assert any("With differential privacy, choose whether" in unescape(e.value) for e in at.error)
    assert "train_job" not in at.session_state
    at.radio(key="train_exclude_seen").set_value("kept as candidates")
    at = wait_until_finished(fill_and_train(at, train_epochs=2))
    assert not at.exception and not at.error, [e.value for e in at.error]
    record = run_record(Workspace(_isolated_workspace_env), at.session_state["train_job"])
    assert record["config"]["settings"]["train"]["privacy"] == {"epsilon": 4.0, "delta": None, "max_grad_norm": 1.0}
    spent = record["metrics"]["privacy"]["epsilon"]
    assert 0.95 * 4.0 <= spent <= 4.0
    assert runs_frame(at)["dp_epsilon"].tolist() == [spent]
    assert any(
        re.search(r"finished: best epoch 2, .*; trained with DP, ε = [0-9.]+, δ = ", unescape(s.value))
        for s in at.success
    )


def buttons(at: AppTest) -> dict[str, object]:
    return {b.key: b for b in at.button if b.key}


def test_delete_asks_first_then_removes_the_run_and_its_folder(page: AppTest, _isolated_workspace_env: Path) -> None:
    ws = Workspace(_isolated_workspace_env)
    for run_id in ("tiny-keep", "tiny-drop"):
        set_run(ws, run_id, DATASET, DONE, {"dataset": DATASET, "settings": {}}, {"test": {"HR@10": 0.5}})
        ws.run_dir(run_id).mkdir(parents=True)
        (ws.run_dir(run_id) / "metrics.json").write_text("{}", encoding="utf-8")
    at = page.run()
    at.session_state["run"] = "tiny-drop"
    at.selectbox(key="train_manage_run").set_value("tiny-drop")
    at.button(key="delete_run").click().run()
    assert not at.exception and not at.error
    assert any("Delete run tiny-drop" in unescape(w.value) for w in at.warning)
    at.button(key="keep_run").click().run()  # changed their mind: nothing is deleted
    assert "confirm_delete" not in buttons(at) and run_record(ws, "tiny-drop")["status"] == DONE
    at.button(key="delete_run").click().run()
    at.button(key="confirm_delete").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(unescape(s.value) == "Deleted run tiny-drop and its folder." for s in at.success)
    with pytest.raises(NotFoundError):
        run_record(ws, "tiny-drop")
    assert not ws.run_dir("tiny-drop").exists() and ws.run_dir("tiny-keep").is_dir()
    assert runs_frame(at)["run_id"].tolist() == ["tiny-keep"]
    assert "run" not in at.session_state  # the deleted run is no longer the one the other pages use


def test_a_live_run_is_not_deleted(page: AppTest, _isolated_workspace_env: Path) -> None:
    ws = Workspace(_isolated_workspace_env)
    owner = subprocess.Popen(["sleep", "120"])  # a live process trains it
    try:
        claim(ws.run_dir("tiny-live"), "tiny-live", owner.pid)
        set_run(ws, "tiny-live", DATASET, RUNNING, {"dataset": DATASET, "settings": {}}, None)
        at = page.run()
        assert "resume_run" not in buttons(at)
        at.button(key="delete_run").click().run()
        at.button(key="confirm_delete").click().run()
        assert not at.exception
        errors = [unescape(e.value) for e in at.error]
        assert len(errors) == 1 and errors[0].startswith(f"run tiny-live is still training (process {owner.pid} "), (
            errors
        )
        assert run_record(ws, "tiny-live")["status"] == RUNNING and ws.run_dir("tiny-live").is_dir()
    finally:
        owner.kill()
        owner.wait()


def test_an_interrupted_run_restarts_from_the_page(
    page: AppTest, _isolated_workspace_env: Path, tiny_bert_dir: Path
) -> None:
    ws = Workspace(_isolated_workspace_env)
    ended = subprocess.Popen(["true"])
    ended.wait()
    claim(ws.run_dir("tiny-killed"), "tiny-killed", ended.pid)  # its process is gone, before any checkpoint
    settings = {"encoder": str(tiny_bert_dir), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1}}
    set_run(ws, "tiny-killed", DATASET, RUNNING, {"dataset": DATASET, "settings": settings}, None)
    at = page.run()
    assert runs_frame(at)["status"].tolist() == ["interrupted"]
    assert any("Its process is gone" in unescape(c.value) for c in at.caption)
    assert buttons(at)["resume_run"].label == "Restart it from scratch"
    at.button(key="resume_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["train_job"] == "tiny-killed"
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(unescape(s.value).startswith("Run tiny-killed finished: best epoch 1") for s in at.success)
    assert run_record(ws, "tiny-killed")["status"] == DONE
    assert runs_frame(at)["run_id"].tolist() == ["tiny-killed"]


def test_a_run_trained_on_data_since_deleted_is_marked_and_retrains(
    page: AppTest, _isolated_workspace_env: Path, tiny_bert_dir: Path, training_data_dir: Path
) -> None:
    """After `forget`, the runs table shows the mark, the actions explain it, and Retrain trains a new run with the
    same settings on the rows without the user (that run is not marked)."""
    ws = Workspace(_isolated_workspace_env)
    settings = {"encoder": str(tiny_bert_dir), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1}}
    set_run(ws, "tiny-old", DATASET, DONE, {"dataset": DATASET, "settings": settings}, {"test": {"HR@10": 0.5}})
    user = str(pd.read_csv(training_data_dir / "events.csv")["user_id"].iloc[0])
    assert forget_user(ws, user).runs_marked == ["tiny-old"]
    at = page.run()
    assert runs_frame(at).set_index("run_id").loc["tiny-old", "mark"] == DATA_DELETED
    assert any("tiny-old was trained on data since deleted" in unescape(w.value) for w in at.warning)
    at.button(key="retrain_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    new = at.session_state["train_job"]
    assert new != "tiny-old" and run_record(ws, new)["config"]["settings"] == settings
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert run_record(ws, new)["status"] == DONE and run_record(ws, new)["mark"] is None
    assert ws.pseudonymize([user])[0] not in set(open_run(ws, new).recommender().data_.users)


def test_update_a_run_on_newer_data_from_the_page(
    page: AppTest, _isolated_workspace_env: Path, tiny_bert_dir: Path, training_data_dir: Path
) -> None:
    """Update this run: a new run starts from the picked run's weights on the chosen dataset, records its parent,
    and the runs table shows the lineage."""
    from core.runs.train import train_run

    ws = Workspace(_isolated_workspace_env)
    settings = {"encoder": str(tiny_bert_dir), "device": "cpu", "model": dict(TINY_MODEL), "train": {"epochs": 1}}
    parent = train_run(ws, DATASET, settings)
    ingest(ws, training_data_dir / "events.csv", training_data_dir / "items.csv", IngestOptions(name="tiny-newer"))
    at = page.run()
    at.selectbox(key="train_manage_run").set_value(parent).run()
    at.selectbox(key=f"update_dataset_{parent}").set_value("tiny-newer")
    at.button(key="update_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    child = at.session_state["train_job"]
    assert any(unescape(s.value) == f"Updating {parent} on dataset tiny-newer as run {child}." for s in at.success), [
        unescape(s.value) for s in at.success
    ]
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    record = run_record(ws, child)
    assert record["status"] == DONE and record["dataset"] == "tiny-newer" and record["config"]["parent"] == parent
    assert record["config"]["settings"]["train"]["epochs"] == 5  # an update's few epochs
    assert open_run(ws, child).config["warm_start"]["run"] == parent
    assert runs_frame(at).set_index("run_id").loc[child, "parent"] == parent


def test_lora_fine_tuning_from_the_page_reaches_the_run_and_its_adapter(
    page: AppTest, _isolated_workspace_env: Path
) -> None:
    page.radio(key="train_finetune").set_value("LoRA adapters")
    at = fill_and_train(page, train_lora_rank=4)
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.session_state["train_job"]
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    ws = Workspace(_isolated_workspace_env)
    record = run_record(ws, run_id)
    assert record["status"] == "done"
    assert record["config"]["settings"]["encoder"] == {"path": None, "finetune": "lora", "lora_rank": 4}
    saved = json.loads((ws.run_dir(run_id) / "config.json").read_text())
    assert saved["encoder_adapter"]["finetune"] == "lora" and (ws.run_dir(run_id) / ADAPTER_FILE).is_file()


def test_two_processes_from_the_page_train_one_run(page: AppTest, _isolated_workspace_env: Path) -> None:
    at = fill_and_train(page, train_processes=2)
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_id = at.session_state["train_job"]
    at = wait_until_finished(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    ws = Workspace(_isolated_workspace_env)
    record = run_record(ws, run_id)
    assert record["status"] == "done" and record["config"]["processes"] == 2
    assert list(list_runs(ws)["run_id"]) == [run_id]  # one run, written by rank 0 alone
    log = (ws.run_dir(run_id) / "train.log").read_text()
    assert "rank 1 trained its share with rank 0" in log and f"run {run_id}: done" in log
