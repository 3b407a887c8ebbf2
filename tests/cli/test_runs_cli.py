"""`behaviorlens train | evaluate | recommend | runs` through the real CLI on a small generated dataset.

One module-wide workspace: ingest once, train once (real default MiniLM encoder, tiny model),
then every test reads that run. Most calls go through ``core.cli.main`` in-process; one
subprocess check runs ``python -m core.cli`` for real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_support import TINY_MODEL  # tests/tiny_support.py

METRICS = ("HR@10", "NDCG@10", "MRR@10", "RMSE", "MAE", "AUC")
TINY = {
    "model": dict(TINY_MODEL),
    "train": {"batch_size": 64},
}


class Env:
    def __init__(self, root: Path, cli, tiny_data) -> None:
        self.root = root
        self.workspace = str(root / "ws")
        self.run_cli = cli
        self.data = tiny_data(root / "data", 5, n_users=40, n_items=30, target_events=1500)
        self.config = root / "cfg.json"
        self.config.write_text(json.dumps(TINY), encoding="utf-8")
        self.train_json: dict[str, Any] = {}
        self.run_id = ""

    def cli(self, *args: str) -> tuple[int, str, str]:
        return self.run_cli(*args, workspace=self.workspace)

    def json(self, *args: str) -> Any:
        return self.cli(*args, "--json").json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, cli, tiny_data) -> Env:
    """The module's workspace, ingested and trained once through the CLI."""
    e = Env(tmp_path_factory.mktemp("cli"), cli, tiny_data)
    report = e.json(
        "ingest", str(e.root / "data" / "events.csv"), "--items", str(e.root / "data" / "items.csv"), "--name", "syn"
    )
    assert report["dataset"] == "syn" and report["rows_accepted"] == len(e.data.events)
    assert report["pseudonymized"] is True
    e.train_json = e.json("train", "--dataset", "syn", "--epochs", "1", "--config", str(e.config))
    e.run_id = e.train_json["run"]
    return e


def _check_metrics(block: dict[str, Any]) -> None:
    for key in METRICS:
        assert key in block, key
        value = block[key]
        assert value is None or isinstance(value, (int, float)), (key, value)
    for key in ("HR@10", "NDCG@10", "MRR@10", "AUC"):
        assert 0.0 <= block[key] <= 1.0


def test_train_prints_the_run_and_its_metrics(env: Env) -> None:
    out = env.train_json
    assert out["run"].startswith("syn-")
    assert out["protocol"] == "full"
    _check_metrics(out["test"])
    _check_metrics(out["valid"])
    folder = Path(env.workspace) / "runs" / env.run_id
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_config"]["d_model"] == 16 and config["settings"]["train"]["epochs"] == 1


def test_evaluate_json_has_the_documented_keys(env: Env) -> None:
    out = env.json("evaluate", "--run", env.run_id)
    assert {"run", "protocol", "exclude_seen", "target_behavior", "test", "valid"} <= set(out)
    assert out["run"] == env.run_id
    assert out["protocol"] == "full"
    assert isinstance(out["exclude_seen"], bool)
    assert out["target_behavior"] is None
    _check_metrics(out["test"])
    _check_metrics(out["valid"])
    assert out["test"] == env.train_json["test"]  # same model, same protocol
    # train reports the figures its training saved; the saved model, loaded and evaluated, gives the same object
    assert out == env.train_json


def test_a_run_saved_without_the_whole_header_is_evaluated_afresh(env: Env) -> None:
    from core.runs.run import open_run
    from core.runs.scores import evaluate_run, trained_evaluation
    from core.store.workspace import Workspace

    run = open_run(Workspace(Path(env.workspace)), env.run_id)
    saved = trained_evaluation(run)
    run.metrics = {k: v for k, v in (run.metrics or {}).items() if k != "protocol_name"}  # as saved before
    afresh, evaluated = trained_evaluation(run), evaluate_run(run)
    assert list(afresh) == list(evaluated) == list(saved)
    assert afresh["test"] == evaluated["test"] == saved["test"] and afresh["label"] == saved["label"]


def test_evaluate_exclude_seen_changes_the_protocol(env: Env) -> None:
    yes = env.json("evaluate", "--run", env.run_id, "--exclude-seen", "yes")
    no = env.json("evaluate", "--run", env.run_id, "--exclude-seen", "no")
    assert yes["exclude_seen"] is True and no["exclude_seen"] is False
    assert "earlier items of any behavior excluded" in yes["label"] and "earlier items kept" in no["label"]
    assert yes["request_time"] == no["request_time"] == "standin" and "stand-in time" in yes["label"]
    assert set(yes["baselines"]["test"]) == {"popularity", "recent_items"}
    assert yes["baselines"]["test"]["recent_items"] is None  # every recent item is excluded
    assert no["baselines"]["test"]["recent_items"]["users"] == no["test"]["users"]
    actual = env.json("evaluate", "--run", env.run_id, "--request-time", "actual")
    assert actual["request_time"] == "actual" and actual["label"].endswith("time-aware: target time known")
    _check_metrics(yes["test"])
    _check_metrics(no["valid"])


def test_evaluate_target_behavior(env: Env) -> None:
    out = env.json("evaluate", "--run", env.run_id, "--target-behavior", "purchase")
    assert out["target_behavior"] == "purchase" and "last purchase" in out["label"]
    _check_metrics(out["test"])
    assert out["test"]["users"] < env.train_json["test"]["users"]


def test_evaluate_text_output(env: Env) -> None:
    code, out, err = env.cli("evaluate", "--run", env.run_id)
    assert code == 0, err
    assert "full ranking" in out and "test" in out


def test_recommend_for_an_original_user_id(env: Env) -> None:
    raw_user = str(env.data.events["user_id"].iloc[0])
    out = env.json("recommend", "--run", env.run_id, "--user", raw_user, "--k", "5")
    assert out["run"] == env.run_id and out["user"] == raw_user
    items = out["items"]
    assert len(items) == 5
    catalogue = set(env.data.items["item_id"].astype(str))
    for row in items:
        assert row["item_id"] in catalogue
        assert isinstance(row["title"], str) and row["title"]
        assert 0.0 < row["engagement"] < 1.0
        assert isinstance(row["rating"], float)
    probs = [row["engagement"] for row in items]
    assert probs == sorted(probs, reverse=True)


def test_runs_lists_the_run_with_metrics(env: Env) -> None:
    runs = env.json("runs")
    mine = [r for r in runs if r["run_id"] == env.run_id]
    assert len(mine) == 1
    row = mine[0]
    assert row["dataset"] == "syn" and row["status"] == "done"
    for key in METRICS:
        assert f"test_{key}" in row and f"valid_{key}" in row
    assert row["test_HR@10"] == pytest.approx(env.train_json["test"]["HR@10"])


@pytest.mark.parametrize(
    "args, needle",
    [
        (("evaluate", "--run", "no-such-run"), "no-such-run"),
        (("recommend", "--run", "no-such-run", "--user", "U0001"), "no-such-run"),
        (("train", "--dataset", "no-such-dataset", "--epochs", "1"), "no-such-dataset"),
    ],
)
def test_unknown_names_give_a_clear_message_and_exit_1(env: Env, args: tuple[str, ...], needle: str) -> None:
    code, out, err = env.cli(*args)
    assert code == 1
    assert needle in err and "Traceback" not in err and out == ""


def test_unknown_user_gives_a_clear_message(env: Env) -> None:
    code, out, err = env.cli("recommend", "--run", env.run_id, "--user", "nobody-here", "--json")
    assert code == 1 and "nobody-here" in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize(
    "args, needle",
    [
        (("evaluate", "--target-behavior", "teleport"), "teleport"),
        (("recommend", "--user", "U0001", "--k", "0"), "--k"),
    ],
)
def test_bad_options_exit_2(env: Env, args: tuple[str, ...], needle: str) -> None:
    code, out, err = env.cli(args[0], "--run", env.run_id, *args[1:])
    assert code == 2 and needle in err and "Traceback" not in err


def test_bad_config_file_exits_2(env: Env, tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    code, _, err = env.cli("train", "--dataset", "syn", "--config", str(missing))
    assert code == 2 and "absent.json" in err
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"train": {"epochz": 1}}), encoding="utf-8")
    code, _, err = env.cli("train", "--dataset", "syn", "--config", str(unknown))
    assert code == 2 and "epochz" in err


def test_bad_setting_value_in_config_exits_2(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"loss_weights": "learned"}}), encoding="utf-8")
    code, _, err = env.cli("train", "--dataset", "syn", "--config", str(bad))
    assert code == 2 and "loss_weights" in err


def test_real_subprocess_evaluate_and_unknown_run(env: Env, cli) -> None:
    ok = cli.subprocess("evaluate", "--run", env.run_id, "--json", workspace=env.workspace)
    assert ok.code == 0, ok.err
    out = ok.json()
    assert out["run"] == env.run_id and out["test"] == env.train_json["test"]
    bad = cli.subprocess("recommend", "--run", "no-such-run", "--user", "U1", workspace=env.workspace)
    assert bad.code == 1
    assert "no-such-run" in bad.err and "Traceback" not in bad.err and bad.out == ""
