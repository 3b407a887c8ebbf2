"""`behaviorlens explain` through the real CLI on a tiny run (d_model 16, max_len 20, a random 1-layer BERT).

One module-wide workspace: ingest a small generated dataset (pseudonymized user IDs), train
once, then every test explains through ``core.cli.main`` in-process; one subprocess check
runs ``python -m core.cli`` for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_support import tiny_bert  # tests/tiny_support.py

TRAIN = {"batch_size": 32, "epochs": 2, "threads": 1}
KEYS = {
    "events",
    "score",
    "baseline_score",
    "completeness_delta",
    "runtime_ms",
    "aopc",
    "aopc_random",
    "user",
    "item",
    "target",
    "method",
    "heuristic",
}


class Env:
    def __init__(self, root: Path, tiny_run, cli) -> None:
        # its own copy of the tiny BERT: test_tokens_without_the_encoder_is_a_clear_error moves it away
        run = tiny_run(root, train=TRAIN, encoder=tiny_bert(root / "bert"))
        self.workspace, self.run_id, self.bert, self.run_cli = str(run.root), run.run_id, run.encoder, cli
        data = run.data
        self.user = run.user
        self.item = str(data.events.loc[data.events["user_id"] == self.user, "item_id"].iloc[-1])

    def cli(self, *args: str) -> tuple[int, str, str]:
        return self.run_cli(*args, workspace=self.workspace)

    def explain(self, *extra: str) -> dict[str, Any]:
        return self.cli(
            "explain", "--run", self.run_id, "--user", self.user, "--item", self.item, *extra, "--json"
        ).json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_run, cli) -> Env:
    """The module's workspace: one tiny run (two epochs) on its own copy of the tiny BERT."""
    return Env(tmp_path_factory.mktemp("explain"), tiny_run, cli)


@pytest.mark.parametrize("method", ["ig", "shap", "loo", "attention"])
def test_explain_json_has_the_documented_keys(env: Env, method: str) -> None:
    out = env.explain("--method", method, "--target", "engagement")
    assert set(out) >= KEYS
    assert out["method"] == method and out["target"] == "engagement"
    assert out["user"] == env.user and out["item"] == env.item and out["run"] == env.run_id
    assert 1 <= len(out["events"]) <= 20
    for event in out["events"]:
        assert isinstance(event["behavior"], str) and isinstance(event["attribution"], float)
        assert {"item", "title", "time", "value", "position"} <= set(event)
    assert isinstance(out["score"], float) and isinstance(out["baseline_score"], float)
    assert out["runtime_ms"] > 0 and isinstance(out["aopc"], float) and isinstance(out["aopc_random"], float)
    assert out["heuristic"] is (method == "attention")
    if method in ("ig", "shap"):
        total = sum(e["attribution"] for e in out["events"])
        assert total - (out["score"] - out["baseline_score"]) == pytest.approx(out["completeness_delta"], abs=1e-4)
        assert abs(out["completeness_delta"]) <= 0.01 * abs(out["score"] - out["baseline_score"]) + 1e-6
    else:
        assert out["completeness_delta"] is None


@pytest.mark.parametrize("target", ["fused", "rating"])
def test_explain_targets(env: Env, target: str) -> None:
    out = env.explain("--method", "loo", "--target", target)
    assert out["target"] == target and out["units"]
    if target == "fused":
        # in [0, 1] up to float32 rounding: the top item's p_i / p_max is 1 computed in two batches of other shapes
        assert -1e-6 <= out["score"] <= 1.0 + 1e-6 and out["details"]["weights"]["engagement"] == 1.0  # no preset yet
        custom = env.explain("--method", "loo", "--weights", "engagement=0.5,rating=0.5")
        assert custom["details"]["weights"]["rating"] == 0.5


def test_default_method_is_ig_on_the_fused_target_and_text_output(env: Env) -> None:
    assert (env.explain()["method"], env.explain()["target"]) == ("ig", "fused")
    code, out, err = env.cli("explain", "--run", env.run_id, "--user", env.user, "--item", env.item, "--method", "loo")
    assert code == 0, err
    assert "completeness delta n/a" in out and "AOPC" in out and env.item in out


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (("--user", "nobody-here"), 1, "nobody-here"),
        (("--item", "no-such-item"), 1, "no-such-item"),
        (("--run", "no-such-run"), 1, "no-such-run"),
        (("--method", "telepathy"), 2, "telepathy"),
        (("--target", "clicks"), 2, "clicks"),
        (("--method", "shap", "--steps", "8"), 2, "--steps"),
        (("--steps", "1"), 2, "--steps 1"),
        (("--method", "shap", "--samples", "3"), 2, "3"),
        (("--target", "rating", "--weights", "engagement=1"), 2, "--weights"),
    ],
)
def test_errors_give_a_clear_message_and_no_traceback(env: Env, args: tuple[str, ...], code: int, needle: str) -> None:
    base = {"--run": env.run_id, "--user": env.user, "--item": env.item}
    given = dict(zip(args[::2], args[1::2]))
    argv = [x for k, v in {**base, **given}.items() for x in (k, v)]
    got, out, err = env.cli("explain", *argv, "--json")
    assert got == code and needle in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize("target", ["fused", "engagement"])
def test_tokens_flag_adds_token_attributions_and_keeps_every_key(env: Env, target: str) -> None:
    plain = env.explain("--method", "loo", "--target", target)
    out = env.explain("--method", "loo", "--target", target, "--tokens")
    assert "tokens" not in plain and set(out) == set(plain) | {"tokens"}
    assert {k: out[k] for k in ("score", "events", "method")} == {k: plain[k] for k in ("score", "events", "method")}
    (tok,) = out["tokens"]
    assert tok["source"] == "candidate" and tok["position"] is None and tok["item"] == env.item
    assert tok["target"] == target and tok["tokens"][0] == "[CLS]" and tok["tokens"][-1] == "[SEP]"
    assert len(tok["attributions"]) == len(tok["tokens"]) and all(len(w) == 2 for w in tok["words"])
    assert tok["score"] == pytest.approx(out["score"], abs=1e-4)
    gap = tok["score"] - tok["baseline_score"]
    assert sum(tok["attributions"]) - gap == pytest.approx(tok["completeness_delta"], abs=1e-9)
    assert abs(tok["completeness_delta"]) <= 0.05 * abs(gap) + 1e-6


def test_tokens_text_output(env: Env) -> None:
    code, out, err = env.cli(
        "explain", "--run", env.run_id, "--user", env.user, "--item", env.item, "--method", "loo", "--tokens"
    )
    assert code == 0, err
    assert "completeness delta" in out and f"text tokens of item {env.item!r} (the candidate" in out


def test_tokens_without_the_encoder_is_a_clear_error(env: Env) -> None:
    away = env.bert.with_name("bert-away")
    env.bert.rename(away)
    try:
        code, out, err = env.cli(
            "explain", "--run", env.run_id, "--user", env.user, "--item", env.item, "--tokens", "--json"
        )
        assert env.explain("--method", "loo")["method"] == "loo"  # the event attributions do not need it
    finally:
        away.rename(env.bert)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "text encoder" in err and str(env.bert) in err


def test_real_subprocess_explain(env: Env, cli) -> None:
    ok = cli.subprocess(
        "explain",
        "--run",
        env.run_id,
        "--user",
        env.user,
        "--item",
        env.item,
        "--method",
        "ig",
        "--json",
        workspace=env.workspace,
    )
    assert ok.code == 0, ok.err
    out = ok.json()
    assert set(out) >= KEYS and out["method"] == "ig"
