"""The names inside a run folder, and the sealed run config that describes the saved model.

A run folder (``<workspace>/runs/<run_id>/``) holds::

    model.safetensors        the best model's weights
    config.json              settings, architecture, vocabulary, protocol, rating scale; sealed by a checksum
    metrics.json             valid/test metrics, the protocol label, per-epoch history
    run.json                 the dataset and settings the run was started with
    progress.json            epoch, best epoch and history, rewritten after every epoch
    train_state.safetensors  + train_state.json: what an interrupted run resumes from (removed when done)
    fusion_presets.json      named fusion weights and the run's default
    fusion/                  cached fusion candidates, one safetensors + JSON pair per context
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from core.store.files import sha256_bytes

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
PRESETS_FILE = "fusion_presets.json"
FUSION_FOLDER = "fusion"

FORMAT = "behaviorlens-run/1"
REQUIRED_KEYS = ("format", "settings", "model_config", "weights_sha256", "protocol", "rating_scale", "vocab")


def _config_digest(config: dict[str, Any]) -> str:
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def seal_config(config: dict[str, Any]) -> dict[str, Any]:
    """Add ``config_sha256``, a checksum over the rest of the config."""
    return {**config, "config_sha256": _config_digest(config)}


def check_format(config: dict[str, Any], path: Path) -> None:
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}")


def check_config(config: dict[str, Any], path: Path) -> None:
    """Refuse a run config of another format, with missing keys, edited, or inconsistent with itself."""
    check_format(config, path)
    missing = [k for k in REQUIRED_KEYS if not config.get(k)]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}: it is not a complete run config")
    if config.get("config_sha256") != _config_digest(config):
        raise ArtifactError(f"{path} does not match its own checksum: it was edited after it was written")
    vocab, mcfg = config["vocab"], config["model_config"]
    if len(vocab.get("items", [])) != mcfg.get("n_items") or len(vocab.get("behaviors", [])) + 1 != mcfg.get(
        "n_behaviors"
    ):
        raise ArtifactError(f"{path}: the vocabulary sizes do not match the model's n_items/n_behaviors")
