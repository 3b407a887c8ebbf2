"""Tampered or broken run files: refused with a clear message (exit 2, never an internal error) or rebuilt.

Each test damages its own copy of one tiny trained run (``run_copy``, tests/reliability/conftest.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import RunCopy  # tests/reliability/reliability_support.py
from safetensors.torch import load_file, save_file

from core.errors import ArtifactError
from core.runs.run import open_run
from core.store.files import sha256_bytes
from core.store.run_folder import CONFIG_FILE, FUSION_FOLDER, MODEL_FILE, seal_config
from core.store.workspace import Workspace


def read_config(run: RunCopy) -> dict[str, Any]:
    return json.loads((run.folder / CONFIG_FILE).read_text(encoding="utf-8"))


def write_config(run: RunCopy, config: dict[str, Any], key: bytes | None) -> None:
    """Seal ``config`` afresh (with the workspace key, or the old unkeyed way) and write it over the run's."""
    (run.folder / CONFIG_FILE).write_text(json.dumps(seal_config(config, key)), encoding="utf-8")


def workspace_key(run: RunCopy) -> bytes:
    return Workspace(run.root).secret_key()


def recommend(cli, run: RunCopy, *weights: str):
    """``behaviorlens recommend`` of the run's user; with ``--weights``, by fused score over the cached candidates."""
    args = ("recommend", "--run", run.run_id, "--user", run.user, "--k", "3", "--json", *weights)
    return cli(*args, workspace=run.root)


# -- keyed seals ---------------------------------------------------------------------------------------------
def test_the_saved_config_carries_a_keyed_seal_and_loads(run_copy: RunCopy, cli) -> None:
    config = read_config(run_copy)
    assert len(config["config_hmac"]) == 64 and len(config["config_sha256"]) == 64
    assert recommend(cli, run_copy).code == 0


def test_a_config_resealed_without_the_key_is_refused(run_copy: RunCopy, cli) -> None:
    config = read_config(run_copy)
    config["protocol"]["exclude_seen"] = not config["protocol"]["exclude_seen"]  # an edit that changes results
    write_config(run_copy, config, None)  # the checksum recomputed, as anyone could
    result = recommend(cli, run_copy)
    assert result.code == 2, result.err
    assert "re-sealed without the key" in result.err and "Traceback" not in result.err
    with pytest.raises(ArtifactError, match="re-sealed without the key"):
        open_run(Workspace(run_copy.root), run_copy.run_id).config  # noqa: B018 - the dashboard's path


def test_a_config_sealed_with_another_key_is_refused(run_copy: RunCopy, cli) -> None:
    config = read_config(run_copy)
    config["vocab"]["items"] = list(reversed(config["vocab"]["items"]))
    write_config(run_copy, config, b"k" * 32)
    result = recommend(cli, run_copy)
    assert result.code == 2 and "is not sealed with this workspace's key" in result.err


def test_a_run_saved_before_keyed_seals_is_trusted_once_then_frozen(run_copy: RunCopy, cli) -> None:
    """An unkeyed run the workspace never sealed (an earlier release's) loads; once seen, any change is refused."""
    ws = Workspace(run_copy.root)
    with ws.connect() as con:
        con.execute("DELETE FROM run_seals WHERE run_id = ?", [run_copy.run_id])  # as before this release
    config = read_config(run_copy)
    write_config(run_copy, config, None)  # no config_hmac: the old format
    assert recommend(cli, run_copy).code == 0  # first seen: trusted as it is
    assert recommend(cli, run_copy).code == 0  # unchanged: still loads
    config["protocol"]["exclude_seen"] = not config["protocol"]["exclude_seen"]
    write_config(run_copy, config, None)
    result = recommend(cli, run_copy)
    assert result.code == 2 and "changed since this workspace first opened run" in result.err


# -- non-finite weights --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(run_copy: RunCopy, cli, bad: float) -> None:
    """Weights with a NaN (a diverged training), correctly checksummed and sealed with the key: still refused."""
    state = load_file(run_copy.folder / MODEL_FILE)
    name = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[1] = bad
    save_file(state, run_copy.folder / MODEL_FILE)
    config = read_config(run_copy)
    config["weights_sha256"] = sha256_bytes((run_copy.folder / MODEL_FILE).read_bytes())
    write_config(run_copy, config, workspace_key(run_copy))
    result = recommend(cli, run_copy)
    assert result.code == 2, result.err
    assert "NaN or infinite weights" in result.err and name in result.err
    assert torch.isfinite(load_file(run_copy.folder / MODEL_FILE)[name]).sum() > 0  # the rest was fine


# -- wrong types behind a right checksum ---------------------------------------------------------------------------
def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        target = config
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value

    return edit


WRONG_TYPES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a string for a number": (_set("model_config", "dropout", value="0.1"), "model_config.dropout"),
    "a string for a whole number": (_set("model_config", "d_model", value="16"), "model_config.d_model"),
    "a string for a flag": (_set("model_config", "use_text", value="yes"), "model_config.use_text"),
    "a string for the vocabulary": (_set("vocab", value="abc"), "vocab"),
    "a number for the item list": (_set("vocab", "items", value=5), "vocab.items"),
    "a string for the rating mean": (_set("rating_scale", "mean", value="x"), "rating_scale.mean"),
    "a string for exclude_seen": (_set("protocol", "exclude_seen", value="no"), "protocol.exclude_seen"),
    "a list for the settings": (_set("settings", value=[1]), "settings"),
    "a string for the epochs": (_set("settings", "train", "epochs", value="3"), "epochs"),
    "a string for the history": (_set("history", value="x"), "history"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_a_wrongly_typed_config_with_a_right_seal_exits_2(run_copy: RunCopy, cli, case: str) -> None:
    edit, field = WRONG_TYPES[case]
    config = read_config(run_copy)
    edit(config)
    write_config(run_copy, config, workspace_key(run_copy))  # the seal is right: only the types are wrong
    result = recommend(cli, run_copy)
    assert result.code == 2, result.err
    assert field in result.err and "internal error" not in result.err


# -- a broken fusion cache is rebuilt --------------------------------------------------------------------------------
FUSED = ("--weights", "engagement=0.7,rating=0.3")
BREAKAGES: dict[str, Callable[[str], str]] = {
    "truncated": lambda text: text[: len(text) // 2],
    "not JSON": lambda text: "<html>oops</html>",
    "a list": lambda text: "[1, 2, 3]",
    "user IDs of another shape": lambda text: json.dumps({**json.loads(text), "user_ids": 5}),
    "too few user IDs": lambda text: json.dumps({**json.loads(text), "user_ids": json.loads(text)["user_ids"][:2]}),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_fusion_cache_json_is_rebuilt_with_a_warning(
    run_copy: RunCopy, cli, caplog: pytest.LogCaptureFixture, breakage: str
) -> None:
    first = recommend(cli, run_copy, *FUSED)
    assert first.code == 0, first.err
    sidecars = sorted((run_copy.folder / FUSION_FOLDER).glob("*.json"))
    assert len(sidecars) == 1
    sidecar: Path = sidecars[0]
    sidecar.write_text(BREAKAGES[breakage](sidecar.read_text(encoding="utf-8")), encoding="utf-8")
    with caplog.at_level("WARNING", logger="core.fusion.cache"):
        again = recommend(cli, run_copy, *FUSED)
    assert again.code == 0, again.err
    assert again.json() == first.json()
    assert "rebuilding it" in caplog.text and str(sidecar) in caplog.text
    assert isinstance(json.loads(sidecar.read_text(encoding="utf-8"))["user_ids"], list)  # written afresh
