"""`behaviorlens influence` and `behaviorlens counterfactual` through the real CLI on a tiny run.

One module-wide workspace: ingest a small generated dataset (pseudonymized user IDs, item
categories), train once (d_model 16, max_len 20, a random 1-layer BERT), then every test
runs ``core.cli.main`` in-process; one subprocess check runs ``python -m core.cli`` for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TRAIN = {"batch_size": 32, "epochs": 2, "threads": 1}
KEYS = {
    "per_behavior_share",
    "per_event",
    "per_behavior_signed",
    "by_time_gap",
    "by_category",
    "ablation",
    "ablation_baseline",
    "method",
    "users",
    "protocol",
    "intervals",
    "events",
    "k",
    "seed",
    "run",
}
CF_KEYS = {
    "user",
    "item",
    "k",
    "found",
    "message",
    "events",
    "rank_before",
    "rank_after",
    "verified",
    "size",
    "max_removals",
}


class Env:
    def __init__(self, root: Path, tiny_run, cli) -> None:
        run = tiny_run(root, train=TRAIN)
        self.workspace, self.run_id, self.run_cli = str(run.root), run.run_id, cli
        self.user = run.user
        self.categories = set(run.data.items["category"])

    def cli(self, *args: str) -> tuple[int, str, str]:
        return self.run_cli(*args, workspace=self.workspace)

    def json(self, *args: str) -> dict[str, Any]:
        return self.cli(*args, "--json").json()

    def top(self, k: int) -> list[str]:
        out = self.json("recommend", "--run", self.run_id, "--user", self.user, "--k", str(k))
        rows = out["items"] if isinstance(out, dict) else out
        return [r["item_id"] for r in rows]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_run, cli) -> Env:
    """The module's workspace: one tiny run (two epochs) on the standard tiny BERT."""
    return Env(tmp_path_factory.mktemp("influence"), tiny_run, cli)


@pytest.mark.parametrize("method", ["loo", "ig", "swap"])
def test_influence_json_has_the_documented_keys(env: Env, method: str) -> None:
    out = env.json("influence", "--run", env.run_id, "--users", "8", "--method", method, "--seed", "2")
    assert set(out) >= KEYS
    assert (out["method"], out["users"], out["seed"], out["run"], out["k"]) == (method, 8, 2, env.run_id, 10)
    assert "leave-last-out" in out["protocol"]
    assert sum(out["per_behavior_share"].values()) == pytest.approx(1.0)
    assert set(out["per_event"]) and all(isinstance(v, float) for v in out["per_event"].values())
    assert set(out["by_time_gap"]) <= {"<1h", "1h-1d", "1-7d", ">7d"}
    assert set(out["by_category"]) <= env.categories | {"(none)"}
    for behavior, deltas in out["ablation"].items():
        assert {"HR@10", "NDCG@10", "RMSE", "removed_events"} <= set(deltas), behavior
    assert {"HR@10", "NDCG@10", "RMSE"} <= set(out["ablation_baseline"])


def test_influence_defaults_text_and_no_ablation(env: Env) -> None:
    out = env.json("influence", "--run", env.run_id, "--users", "5", "--no-ablation")
    assert out["method"] == "loo" and out["ablation"] is None and out["users"] == 5
    assert out["details"]["min_age"] == 3600
    every = env.json("influence", "--run", env.run_id, "--users", "5", "--no-ablation", "--min-age", "0")
    assert every["events_settled"] == every["events"] and every["per_behavior_share"] == out["per_behavior_share"]
    code, text, err = env.cli("influence", "--run", env.run_id, "--users", "5")
    assert code == 0, err
    assert "per-behavior influence (loo" in text and "without view" in text and "share" in text


def test_counterfactual_json(env: Env) -> None:
    top = env.top(10)
    found = None
    for item in top[::-1]:
        out = env.json("counterfactual", "--run", env.run_id, "--user", env.user, "--item", item, "--k", "10")
        assert set(out) >= CF_KEYS and out["user"] == env.user and out["item"] == item
        assert out["rank_before"] <= 10 and out["found"] == out["verified"]
        if out["found"]:
            found = out
            break
        assert "no counterfactual set found" in out["message"]
    assert found is not None, "no item of the top 10 could be pushed out"
    assert found["rank_after"] > 10 and found["size"] == len(found["events"]) >= 1
    assert {"behavior", "item", "time", "position", "attribution"} <= set(found["events"][0])
    assert "verified" in found["message"]


def test_counterfactual_says_plainly_when_nothing_is_found(env: Env) -> None:
    top = env.top(30)
    out = env.json("counterfactual", "--run", env.run_id, "--user", env.user, "--item", top[-1], "--k", "3")
    assert out["found"] is False and out["events"] == [] and "not in this user's top 3" in out["message"]
    code, text, _ = env.cli(
        "counterfactual", "--run", env.run_id, "--user", env.user, "--item", top[0], "--k", "10", "--max-removals", "1"
    )
    assert code == 0 and text.strip()


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (("influence", "--run", "no-such-run"), 1, "no-such-run"),
        (("influence", "--users", "0"), 2, "users 0"),
        (("influence", "--method", "telepathy"), 2, "telepathy"),
        (("influence", "--k", "0"), 2, "k 0"),
        (("influence", "--min-age", "-1"), 2, "min_age -1"),
        (("counterfactual", "--user", "nobody-here"), 1, "nobody-here"),
        (("counterfactual", "--item", "no-such-item"), 1, "no-such-item"),
        (("counterfactual", "--max-removals", "0"), 2, "max_removals 0"),
    ],
)
def test_errors_give_a_clear_message_and_no_traceback(env: Env, args: tuple[str, ...], code: int, needle: str) -> None:
    command, rest = args[0], args[1:]
    base = {"--run": env.run_id}
    if command == "counterfactual":
        base.update({"--user": env.user, "--item": env.top(1)[0]})
    given = dict(zip(rest[::2], rest[1::2]))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    got, out, err = env.cli(command, *argv, "--json")
    assert got == code and needle in err and "Traceback" not in err and out == ""


def test_real_subprocess_influence(env: Env, cli) -> None:
    ok = cli.subprocess(
        "influence", "--run", env.run_id, "--users", "4", "--no-ablation", "--json", workspace=env.workspace
    )
    assert ok.code == 0, ok.err
    assert set(ok.json()) >= KEYS
