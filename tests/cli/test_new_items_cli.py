"""`behaviorlens train --cold-items` and `evaluate --protocol new-items` through the real CLI.

One module-wide workspace with a generated dataset (40 users, 30 items) and two tiny runs (tiny BERT,
one epoch): one holding a fifth of the items out of training, one without (as every run saved before).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

from core.store.files import load_json
from core.store.run_folder import CONFIG_FILE, METRICS_FILE

METRICS = ("HR@10", "NDCG@10", "MRR@10", "RMSE", "MAE", "AUC", "coverage@10", "users")
EVALUATE_KEYS = {"run", "protocol", "label", "request_time", "exclude_seen", "target_behavior", "test", "valid"}
EVALUATE_KEYS |= {"baselines", "privacy"}


class Env:
    def __init__(self, root: Path, cli: Any) -> None:
        self.workspace = str(root / "ws")
        self.run_cli = cli
        self.cold_run = self.plain_run = ""

    def cli(self, *args: str) -> Any:
        return self.run_cli(*args, workspace=self.workspace)

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.code == 0, result.err
        return result.json()

    def folder(self, run: str) -> Path:
        return Path(self.workspace) / "runs" / run


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, cli: Any, tiny_data: Any, tiny_bert_dir: Path) -> Env:
    root = tmp_path_factory.mktemp("cold-cli")
    e = Env(root, cli)
    tiny_data(root / "data", 5, n_users=40, n_items=30, target_events=1500)
    config = root / "cfg.json"
    settings = {"encoder": str(tiny_bert_dir), "model": dict(TINY_MODEL), "train": {"batch_size": 64, "threads": 1}}
    config.write_text(json.dumps(settings), encoding="utf-8")
    e.json("ingest", str(root / "data" / "events.csv"), "--items", str(root / "data" / "items.csv"), "--name", "syn")
    common = ("train", "--dataset", "syn", "--epochs", "1", "--device", "cpu", "--config", str(config), "--seed", "4")
    cold = e.json(*common, "--cold-items", "0.2")
    e.cold_run = cold["run"]
    assert cold["new_items"]["protocol"] == "new-items"  # the train command prints the new-items figures too
    e.plain_run = e.json(*common)["run"]
    return e


def test_the_flag_round_trips_into_the_saved_config(env: Env) -> None:
    config = load_json(env.folder(env.cold_run) / CONFIG_FILE)
    assert config["settings"]["cold_items"] == 0.2 and config["settings"]["train"]["seed"] == 4
    held = config["held_out_items"]
    assert held["share"] == 0.2 and held["seed"] == 4 and len(held["items"]) == 6  # a fifth of 30 items
    assert set(held["items"]) <= set(config["vocab"]["items"])  # they keep their place (and their text)
    metrics = load_json(env.folder(env.cold_run) / METRICS_FILE)
    assert metrics["new_items"]["held_out_items"] == 6
    assert "new items: 20% of items held out of training" in metrics["new_items"]["label"]
    assert "20% of items held out of training (their events left out)" in metrics["protocol"]


def test_evaluate_new_items_keeps_every_key_and_adds_its_own(env: Env) -> None:
    default = env.json("evaluate", "--run", env.cold_run)
    out = env.json("evaluate", "--run", env.cold_run, "--protocol", "new-items")
    assert set(default) >= EVALUATE_KEYS and set(out) >= EVALUATE_KEYS
    assert default["protocol"] == "full" and out["protocol"] == "new-items"
    assert out["label"] == (
        "full ranking, earlier items kept, target = last event on a held-out item, "
        "new items: 20% of items held out of training, asked at the stand-in time"
    )
    assert out["held_out_items"] == 6 and out["users"] == out["test"]["users"] > 0
    assert set(METRICS) <= set(out["test"]) and out["valid"] is None
    bars = out["baselines"]["test"]
    assert {"popularity", "random", "recent_items"} <= set(bars)
    assert bars["random"]["HR@10"] == pytest.approx(10 / 30, rel=0.2)  # 10 / the candidates of each user
    assert bars["popularity"]["users"] == out["users"]
    stored = load_json(env.folder(env.cold_run) / METRICS_FILE)["new_items"]
    assert stored["test"] == out["test"] and stored["baselines"] == bars  # the same held-out set, the same figures
    text = env.cli("evaluate", "--run", env.cold_run, "--protocol", "new-items")
    assert text.code == 0 and "under the same protocol: popularity HR@10" in text.out and "random HR@10" in text.out


def test_a_run_without_held_out_items_is_refused_clearly(env: Env) -> None:
    result = env.cli("evaluate", "--run", env.plain_run, "--protocol", "new-items")
    assert result.code == 2
    assert f"run {env.plain_run} was trained without held-out items" in result.err
    assert "behaviorlens train --dataset syn --cold-items 0.1" in result.err


def test_a_run_without_held_out_items_saves_and_scores_as_before(env: Env) -> None:
    config = load_json(env.folder(env.plain_run) / CONFIG_FILE)
    assert "held_out_items" not in config and "cold_items" not in config["settings"]
    metrics = load_json(env.folder(env.plain_run) / METRICS_FILE)
    assert "new_items" not in metrics and "held out" not in metrics["protocol"]
    out = env.json("evaluate", "--run", env.plain_run)
    assert out["test"] == metrics["test"] and out["valid"] == metrics["valid"]
    runs = {r["run_id"]: r for r in env.json("runs")}
    assert (
        runs[env.cold_run]["new_items_protocol"].startswith("full ranking") and "new_items_HR@10" in runs[env.cold_run]
    )
    assert runs[env.plain_run].get("new_items_HR@10") is None


@pytest.mark.parametrize("value", ["1", "-0.5", "1.5"])
def test_a_bad_share_is_refused_naming_the_flag(env: Env, value: str) -> None:
    result = env.cli("train", "--dataset", "syn", "--cold-items", value)
    assert result.code == 2 and result.err.startswith(f"behaviorlens: --cold-items {float(value):g}: expected")


def test_new_items_refuses_weights_and_a_known_request_time(env: Env) -> None:
    weights = env.cli("evaluate", "--run", env.cold_run, "--protocol", "new-items", "--weights", "engagement=1")
    assert weights.code == 2 and "leave out --weights" in weights.err
    actual = env.cli("evaluate", "--run", env.cold_run, "--protocol", "new-items", "--request-time", "actual")
    assert actual.code == 2 and "stand-in time" in actual.err


def test_the_cli_offers_the_protocols_of_the_model_layer() -> None:
    from core.cli.runs import PROTOCOLS as OFFERED
    from core.model.protocol import PROTOCOLS

    assert OFFERED == PROTOCOLS and OFFERED[0] == "full"  # the default stays the full leave-last-out ranking
