"""User-level differentially private training: the mechanism (clipping, noise, accounting), a private run
end to end, and the settings it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.errors import DataError
from core.model.config import check_settings
from core.model.privacy import NoisySum, PrivacyPlan, plan_privacy, privacy_label, refuse_unprivate_modules
from core.model.recommender import Recommender
from core.runs.records import list_runs, run_record
from core.runs.run import open_run
from core.runs.scores import evaluate_run
from core.runs.train import resume_run, train_run
from core.store.run_folder import METRICS_FILE

PRIVATE = {
    "exclude_seen": True,
    "model": dict(TINY_MODEL),
    "train": {"batch_size": 8, "epochs": 3, "patience": 1, "privacy": {"epsilon": 4.0}},
}


@pytest.fixture()
def dataset(ws, tmp_path: Path, tiny_dataset) -> str:
    """A generated dataset (40 users, 30 items, some rated) in ``ws``."""
    return tiny_dataset(tmp_path, 5, n_users=40, n_items=30, target_events=1200, workspace=ws).name


def _plan(sigma: float, users: int = 4, rate: float = 0.5, norm: float = 1.0) -> PrivacyPlan:
    return PrivacyPlan(
        epsilon=1.0, delta=1e-3, max_grad_norm=norm, noise_multiplier=sigma, sample_rate=rate,
        steps_per_epoch=2, epochs=1, users=users,
    )  # fmt: skip


def test_each_users_gradient_is_clipped_before_the_sum() -> None:
    weight = torch.nn.Parameter(torch.zeros(3))
    step = NoisySum([weight], _plan(sigma=0.0), torch.Generator().manual_seed(0))
    small = step.add((weight * torch.tensor([0.3, 0.0, 0.4])).sum())  # gradient norm 0.5: kept as it is
    large = step.add((weight * torch.tensor([30.0, 40.0, 0.0])).sum())  # norm 50: scaled to norm 1
    step.release()
    assert small == pytest.approx(0.5) and large == pytest.approx(50.0)
    expected = (torch.tensor([0.3, 0.0, 0.4]) + torch.tensor([0.6, 0.8, 0.0])) / (0.5 * 4)  # / expected batch
    assert torch.allclose(weight.grad, expected, atol=1e-5)


def test_the_noise_has_the_planned_spread_and_covers_every_coordinate() -> None:
    weight = torch.nn.Parameter(torch.zeros(20_000))
    step = NoisySum([weight], _plan(sigma=2.0, norm=0.5), torch.Generator().manual_seed(1))
    step.release()  # no user sampled: noise alone, as Poisson sampling requires
    assert float(weight.grad.std()) == pytest.approx(2.0 * 0.5 / (0.5 * 4), rel=0.03)
    assert abs(float(weight.grad.mean())) < 0.01
    assert bool((weight.grad != 0).all())


def test_the_plan_spends_the_target_and_no_more() -> None:
    plan = plan_privacy({"epsilon": 2.0, "delta": None}, users=500, batch_size=25, epochs=4)
    assert plan.delta == pytest.approx(1 / 500) and plan.sample_rate == pytest.approx(0.05)
    assert plan.steps_per_epoch == 20
    total = plan.spent(plan.steps_per_epoch * plan.epochs)
    assert 0.98 * 2.0 <= total <= 2.0
    assert plan.spent(20) < plan.spent(40) < total  # what a run stopped early spent
    louder = plan_privacy({"epsilon": 0.5}, users=500, batch_size=25, epochs=4)
    assert louder.noise_multiplier > plan.noise_multiplier


def test_a_private_run_keeps_its_last_epoch_and_reports_the_epsilon_spent(ws, dataset: str, cli) -> None:
    run_id = train_run(ws, dataset, PRIVATE)
    run = open_run(ws, run_id)
    metrics = json.loads((ws.run_dir(run_id) / METRICS_FILE).read_text())
    spent = metrics["privacy"]
    assert 0.95 * 4.0 <= spent["epsilon"] <= 4.0
    assert spent["epsilon_target"] == 4.0 and spent["delta"] == pytest.approx(1 / spent["users"])
    assert spent["steps"] == 3 * round(spent["users"] / 8)  # epochs x (users / expected batch)
    assert metrics["best_epoch"] == 3  # every planned epoch, the last one kept (patience 1 does not stop it)
    assert len(metrics["history"]) == 3
    rec = run.recommender()
    # nothing the users' own statistics decide is released with the weights
    assert (rec.scale_.mean, rec.scale_.std) == (0.0, 1.0)
    assert rec.model_.cfg.request_gap == 86400.0
    assert run.config["rating_refit"] is None
    assert run.privacy == spent and privacy_label(run.privacy).startswith("trained with DP, ε = ")
    assert evaluate_run(run)["privacy"] == spent
    assert cli("evaluate", "--run", run_id, "--json", workspace=ws.root).json()["privacy"] == spent
    fused = cli("evaluate", "--run", run_id, "--weights", "engagement=0.7,rating=0.3", "--json", workspace=ws.root)
    assert fused.json()["privacy"] == spent


def test_a_cancelled_private_run_spent_less_and_resumes_to_its_target(ws, dataset: str) -> None:
    epochs: list[int] = []

    def progress(event: dict) -> None:
        if event["event"] == "epoch":
            epochs.append(event["epoch"])

    run_id = train_run(ws, dataset, PRIVATE, progress=progress, cancel=lambda: bool(epochs))
    record = run_record(ws, run_id)
    assert record["status"] == "cancelled"
    early = record["metrics"]["privacy"]["epsilon"]
    assert 0 < early < 0.9 * 4.0
    resume_run(open_run(ws, run_id))
    done = run_record(ws, run_id)["metrics"]["privacy"]
    assert done["epsilon"] > early and 0.95 * 4.0 <= done["epsilon"] <= 4.0


def test_training_without_privacy_is_unchanged_by_it(ws, dataset: str) -> None:
    plain = {**PRIVATE, "train": {k: v for k, v in PRIVATE["train"].items() if k != "privacy"}}
    metrics = run_record(ws, train_run(ws, dataset, plain))["metrics"]
    assert metrics["privacy"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"exclude_seen": None}, "exclude_seen=null with privacy"),
        ({"train": {**PRIVATE["train"], "rating_refit_epochs": 5}}, "rating_refit_epochs=5 with privacy"),
    ],
)
def test_settings_that_learn_outside_the_accounting_are_refused(ws, dataset: str, change: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        train_run(ws, dataset, {**PRIVATE, **change})
    assert list_runs(ws).empty  # refused before a run is recorded
    with pytest.raises(DataError, match=message):
        Recommender.from_settings({**PRIVATE, **change}).fit(ws.events(dataset))


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"epsilon": 0}, r"privacy\.epsilon=0: expected a number of at least 0\.01"),
        ({"epsilon": "8"}, r"privacy\.epsilon='8'"),
        ({}, r"privacy\.epsilon=None"),
        ({"epsilon": 8, "delta": 1.5}, r"privacy\.delta=1\.5: expected null \(1 / users\)"),
        ({"epsilon": 8, "max_grad_norm": -1}, r"privacy\.max_grad_norm=-1"),
        ({"epsilon": 8, "sigma": 1}, r"unknown key\(s\) \['sigma'\]"),
        ([8], "expected null or"),
    ],
)
def test_a_bad_privacy_setting_names_itself(privacy: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        check_settings({"train": {"privacy": privacy}})


def test_batch_normalization_is_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with pytest.raises(DataError, match=r"module 1 \(BatchNorm1d\) cannot be trained privately"):
        refuse_unprivate_modules(model)
    refuse_unprivate_modules(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)))  # no error
