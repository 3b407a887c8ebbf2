"""Multi-process training on torch.distributed (gloo, 2 CPU processes, tiny model): `train --nproc-per-node 2`
takes the same steps as one process with the same global batch, rank 0 alone writes a run that loads and scores
as it measured, and a crashed rank fails the run with a clear status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL

from core.runs.records import FAILED, RUNNING, list_runs, run_record
from core.store.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
# no randomness that depends on how a batch is split: no dropout, no dropped events, no stand-in positions
EXACT = {"dropout": 0.0}
TRAIN = {"batch_size": 16, "epochs": 2, "threads": 1, "event_dropout": 0.0, "standin_rate": 0.0, "patience": 5}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Any, tiny_bert_dir: Path, cli: Any) -> dict[str, Any]:
    """One dataset trained twice with the same settings: in one process and in two (--nproc-per-node 2)."""
    root = tmp_path_factory.mktemp("ddp")
    ds = tiny_dataset(root, 3, n_users=40, n_items=30, target_events=1200)
    config = root / "settings.json"
    settings = {"encoder": str(tiny_bert_dir), "model": {**TINY_MODEL, **EXACT}, "train": TRAIN}
    config.write_text(json.dumps(settings))
    args = ("train", "--dataset", ds.name, "--config", str(config), "--device", "cpu", "--json")
    one = cli.subprocess(*args, workspace=ds.ws.root, timeout=300)
    two = cli.subprocess(*args, "--nproc-per-node", "2", workspace=ds.ws.root, timeout=300)
    assert one.code == 0, one.err
    assert two.code == 0, two.err
    return {"ws": ds.ws, "ds": ds, "one": one.json(), "two": two.json(), "err": two.err}


def _history(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    return json.loads((ws.run_dir(run_id) / "config.json").read_text())["history"]


def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(job: dict[str, Any]) -> None:
    ws, one, two = job["ws"], job["one"]["run"], job["two"]["run"]
    h1, h2 = _history(ws, one), _history(ws, two)
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        for key in ("loss", "loss_engagement", "loss_rating"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, a[key], b[key])
    from safetensors.torch import load_file

    w1, w2 = load_file(ws.run_dir(one) / "model.safetensors"), load_file(ws.run_dir(two) / "model.safetensors")
    assert set(w1) == set(w2)
    worst = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)
    assert worst < 1e-3, f"the weights after the same steps differ by {worst}"


def test_rank_zero_alone_writes_one_run_that_loads_and_scores_as_measured(job: dict[str, Any], cli: Any) -> None:
    ws, result = job["ws"], job["two"]
    runs = list_runs(ws)
    assert sorted(runs["run_id"]) == sorted([job["one"]["run"], result["run"]]), "one run per training, not per rank"
    record = run_record(ws, result["run"])
    assert record["status"] == "done" and record["config"]["processes"] == 2
    assert "processes" not in run_record(ws, job["one"]["run"])["config"]
    again = cli("evaluate", "--run", result["run"], "--json", workspace=ws.root).json()
    assert again["test"] == pytest.approx(result["test"]) and again["valid"] == pytest.approx(result["valid"])
    user = str(job["ds"].data.events["user_id"].iloc[0])
    top = [cli("recommend", "--run", result["run"], "--user", user, "--json", workspace=ws.root).json() for _ in "ab"]
    assert top[0] == top[1] and top[0]["items"]


def test_a_crashed_rank_fails_the_run_with_a_clear_status(
    tmp_path: Path, tiny_dataset: Any, tiny_bert_dir: Path
) -> None:
    import psutil

    ds = tiny_dataset(tmp_path, 4, n_users=40, n_items=30, target_events=1200)
    config = tmp_path / "settings.json"
    config.write_text(
        json.dumps({"encoder": str(tiny_bert_dir), "model": TINY_MODEL, "train": {**TRAIN, "epochs": 500}})
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "core.cli", "train", "--dataset", ds.name, "--config", str(config)]
    command += ["--device", "cpu", "--nproc-per-node", "2", "--workspace", str(ds.ws.root), "--quiet"]
    log = tmp_path / "launcher.log"  # a file, not a pipe: the workers' output never blocks them
    with log.open("w") as out:
        launcher = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, victim = time.monotonic() + 300, None
        while victim is None and time.monotonic() < deadline and launcher.poll() is None:
            running = list_runs(ds.ws)
            started = len(running) and (running["status"] == RUNNING).all()
            if started and (ds.ws.run_dir(running["run_id"][0]) / "train_state.json").is_file():  # an epoch done
                workers = psutil.Process(launcher.pid).children(recursive=True)
                victim = next((p for p in workers if _rank(p) == "1"), None)
            time.sleep(0.5)
        assert victim is not None, f"rank 1 never started training: {log.read_text()[-2000:]}"
        victim.send_signal(signal.SIGKILL)
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    err = log.read_text()
    assert launcher.returncode == 2, err
    run_id = list_runs(ds.ws)["run_id"][0]
    assert f"training run {run_id} in 2 processes failed" in err and "rank 1 exited with code -9" in err
    assert "Traceback" not in err.splitlines()[-1]
    assert run_record(ds.ws, run_id)["status"] == FAILED


def test_a_cancelled_run_resumes_in_two_processes_with_the_steps_it_would_have_taken(
    job: dict[str, Any], tiny_bert_dir: Path, cli: Any
) -> None:
    """`train --resume RUN --nproc-per-node 2`: rank 0 takes the run over, both ranks load its last epoch's state, and
    the epoch they train is the epoch the uninterrupted single process trained."""
    from core.runs.lifecycle import delete_run
    from core.runs.train import train_run
    from core.store import audit

    ws, ds = job["ws"], job["ds"]
    settings = {"encoder": str(tiny_bert_dir), "model": {**TINY_MODEL, **EXACT}, "train": TRAIN, "device": "cpu"}
    epochs: list[int] = []
    run_id = train_run(
        ws,
        ds.name,
        settings,
        progress=lambda e: epochs.append(e["epoch"]) if e["event"] == "epoch" else None,
        cancel=lambda: bool(epochs),  # before the second epoch's first step
    )
    try:
        assert epochs == [1] and run_record(ws, run_id)["status"] == "cancelled"
        resumed = cli.subprocess(
            "train", "--resume", run_id, "--nproc-per-node", "2", "--json", workspace=ws.root, timeout=300
        )
        assert resumed.code == 0, resumed.err
        assert resumed.json()["run"] == run_id
        record = run_record(ws, run_id)
        assert record["status"] == "done" and record["config"]["processes"] == 2
        reference, history = _history(ws, job["one"]["run"]), _history(ws, run_id)
        assert [h["epoch"] for h in history] == [1, 2]
        for key in ("loss", "loss_engagement", "loss_rating"):
            assert [h[key] for h in history] == pytest.approx([h[key] for h in reference], rel=1e-4), key
        actions = audit.entries(ws, None).query("target == @run_id")["action"].tolist()
        assert actions.count("resume") == 1, "one audit record per resume, not one per rank"
    finally:
        delete_run(ws, run_id)  # the other tests count the job's two runs


def test_a_busy_or_finished_run_is_refused_before_any_worker_starts(job: dict[str, Any], cli: Any) -> None:
    done = cli.subprocess("train", "--resume", job["one"]["run"], "--nproc-per-node", "2", workspace=job["ws"].root)
    assert done.code != 0 and "it is finished" in done.err and "rank" not in done.err
    assert run_record(job["ws"], job["one"]["run"])["status"] == "done"


def _rank(process: Any) -> str | None:
    """A launcher's child's RANK (None for one that is gone or not a worker, such as a short-lived helper)."""
    import psutil

    try:
        return str(process.environ().get("RANK"))
    except psutil.Error:
        return None


def _without_times(report: Any) -> Any:
    if isinstance(report, dict):
        return {k: _without_times(v) for k, v in report.items() if not k.endswith("_ms")}
    if isinstance(report, list):
        return [_without_times(v) for v in report]
    return report


@pytest.mark.parametrize("method", ["loo", "swap"])
def test_global_influence_sharded_over_two_processes_equals_one(job: dict[str, Any], cli: Any, method: str) -> None:
    ws, run_id = job["ws"], job["two"]["run"]
    args = ("influence", "--run", run_id, "--users", "25", "--method", method, "--json")
    # one thread, as each of the launcher's workers: sums over two threads may differ in the last digit
    one = cli.subprocess(*args, workspace=ws.root, env={"OMP_NUM_THREADS": "1"}, timeout=300)
    two = cli.subprocess(*args, "--nproc-per-node", "2", workspace=ws.root, timeout=300)
    assert one.code == 0, one.err
    assert two.code == 0, two.err
    single, sharded = one.json(), two.json()  # rank 0 alone prints: one JSON document
    assert single["users"] == sharded["users"] == 25 and single["ablation"]
    assert _without_times(sharded) == _without_times(single)
