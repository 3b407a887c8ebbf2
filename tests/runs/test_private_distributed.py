"""Differentially private training in several processes (gloo, 2 CPU processes): the DP-SGD step of two ranks is the
step of one process (the same sample, the clipped sums added up, the same noise once), and a private run trained
with `--nproc-per-node 2` spends what one process spends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_support import TINY_MODEL

from core.model.privacy import NoisySum, PrivacyPlan
from core.runs.records import run_record
from core.store.run_folder import METRICS_FILE

REPO = Path(__file__).resolve().parents[2]
# five users' gradients of two parameters: two of them above the clipping bound
USERS = [[0.3, 0.0, 0.4, 0.1, 0.0], [30.0, 40.0, 0.0, 1.0, 2.0], [0.0, 0.2, 0.1, 0.0, 0.3], [5.0, 0.0, 0.0, 5.0, 5.0],
         [0.1, 0.1, 0.1, 0.1, 0.1]]  # fmt: skip
PLAN = {"epsilon": 1.0, "delta": 1e-3, "max_grad_norm": 1.0, "noise_multiplier": 0.7, "sample_rate": 0.5,
        "steps_per_epoch": 1, "epochs": 1, "users": 10}  # fmt: skip
STEP = """
import json, sys
import torch
from core.model import distributed
from core.model.privacy import NoisySum, PrivacyPlan

group = distributed.setup("cpu")
users, plan, out = json.loads(sys.argv[1]), PrivacyPlan(**json.loads(sys.argv[2])), sys.argv[3]
a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
step = NoisySum([a, b], plan, torch.Generator().manual_seed(7))
for g in users[group.rank :: group.world]:
    step.add((a * torch.tensor(g[:3])).sum() + (b * torch.tensor(g[3:])).sum())
step.release(group)
torch.save([a.grad, b.grad], f"{out}/rank{group.rank}.pt")
"""


def test_two_ranks_take_the_dp_sgd_step_of_one_process(tmp_path: Path) -> None:
    script = tmp_path / "step.py"
    script.write_text(STEP)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    done = subprocess.run(
        [*command, json.dumps(USERS), json.dumps(PLAN), str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    step = NoisySum([a, b], PrivacyPlan(**PLAN), torch.Generator().manual_seed(7))  # one process, every user
    for g in USERS:
        step.add((a * torch.tensor(g[:3])).sum() + (b * torch.tensor(g[3:])).sum())
    step.release()
    for got in ranks:
        assert torch.allclose(got[0], a.grad, atol=1e-6) and torch.allclose(got[1], b.grad, atol=1e-6)
    assert all(torch.equal(x, y) for x, y in zip(*ranks)), "every rank sets the same gradients"
    noiseless = sum(min(1.0, 1.0 / float(torch.tensor(g).norm())) * torch.tensor(g) for g in USERS) / 5
    assert not torch.allclose(torch.cat([a.grad, b.grad]), noiseless, atol=1e-3), "the noise is there"


def test_a_private_run_in_two_processes_spends_what_one_process_spends(
    tmp_path: Path, tiny_dataset: Any, tiny_bert_dir: Path, cli: Any
) -> None:
    ds = tiny_dataset(tmp_path, 5, n_users=40, n_items=30, target_events=1200)
    config = tmp_path / "private.json"
    train = {"batch_size": 8, "epochs": 2, "patience": 1, "threads": 1, "privacy": {"epsilon": 4.0}}
    config.write_text(json.dumps({"encoder": str(tiny_bert_dir), "exclude_seen": True, "model": TINY_MODEL,
                                  "train": train}))  # fmt: skip
    args = ("train", "--dataset", ds.name, "--config", str(config), "--device", "cpu", "--json")
    one = cli.subprocess(*args, workspace=ds.ws.root, timeout=300)
    two = cli.subprocess(*args, "--nproc-per-node", "2", workspace=ds.ws.root, timeout=300)
    assert one.code == 0, one.err
    assert two.code == 0, two.err
    spent = [json.loads((ds.ws.run_dir(r.json()["run"]) / METRICS_FILE).read_text()) for r in (one, two)]
    assert spent[0]["privacy"] == spent[1]["privacy"]  # the same plan, the same steps: the same ε
    assert 0.95 * 4.0 <= spent[1]["privacy"]["epsilon"] <= 4.0 and spent[1]["best_epoch"] == 2
    history = spent[1]["history"]
    assert len(history) == 2 and all(h["loss"] > 0 and 0 <= h["clipped_share"] <= 1 for h in history)
    record = run_record(ds.ws, two.json()["run"])
    assert record["status"] == "done" and record["config"]["processes"] == 2
    assert two.json()["privacy"] == spent[1]["privacy"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
