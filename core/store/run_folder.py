"""The names inside a run folder, and the sealed run config that describes the saved model.

A run folder (``<workspace>/runs/<run_id>/``) holds::

    model.safetensors        the best model's weights
    config.json              settings, architecture, vocabulary, protocol, rating scale; sealed by a checksum
                             and, when saved in a workspace, an HMAC under the workspace key (core.store.seals)
    metrics.json             valid/test metrics, the protocol label, per-epoch history
    run.json                 the dataset and settings the run was started with
    progress.json            epoch, best epoch and history, rewritten after every epoch
    train_state.safetensors  + train_state.json: what an interrupted run resumes from (removed when done)
    fusion_presets.json      named fusion weights and the run's default
    fusion/                  cached fusion candidates, one safetensors + JSON pair per context
"""

from __future__ import annotations

import hashlib
import hmac
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


SEAL_FIELDS = ("config_sha256", "config_hmac")


def _body(config: dict[str, Any]) -> bytes:
    """The canonical bytes a seal covers: the config without its seals."""
    body = {k: v for k, v in config.items() if k not in SEAL_FIELDS}
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")


def _config_digest(config: dict[str, Any]) -> str:
    return sha256_bytes(_body(config))


def _config_hmac(config: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _body(config), hashlib.sha256).hexdigest()


def seal_config(config: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """Add ``config_sha256``, a checksum over the rest of the config, and with a workspace ``key``
    ``config_hmac``: HMAC-SHA256 under that key, which no one without the key can recompute."""
    sealed = {k: v for k, v in config.items() if k not in SEAL_FIELDS}
    sealed["config_sha256"] = _config_digest(sealed)
    if key is not None:
        sealed["config_hmac"] = _config_hmac(sealed, key)
    return sealed


def check_format(config: dict[str, Any], path: Path) -> None:
    if config.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}")


def check_config(config: dict[str, Any], path: Path, key: bytes | None = None) -> bool:
    """Refuse a run config of another format, with missing keys, edited, or inconsistent with itself; with a
    workspace ``key``, one whose keyed seal is not that key's. Whether it carries a keyed seal checked with ``key``.

    Without ``key`` only the plain checksum is checked (a library caller loading a folder of its own);
    :func:`core.store.seals.check_run_seal` also decides whether a config without a keyed seal is acceptable.
    """
    check_format(config, path)
    missing = [k for k in REQUIRED_KEYS if not config.get(k)]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}: it is not a complete run config")
    if config.get("config_sha256") != _config_digest(config):
        raise ArtifactError(f"{path} does not match its own checksum: it was edited after it was written")
    mac = config.get("config_hmac")
    keyed = mac is not None and key is not None
    if keyed and not (isinstance(mac, str) and hmac.compare_digest(mac, _config_hmac(config, key or b""))):
        raise ArtifactError(
            f"{path} is not sealed with this workspace's key: it was edited and re-sealed by someone without the "
            "key, or copied from another workspace; restore the original config.json or retrain the run"
        )
    vocab, mcfg = config["vocab"], config["model_config"]
    if not isinstance(vocab, dict) or not isinstance(mcfg, dict):
        raise ArtifactError(f"{path}: vocab and model_config must be JSON objects")
    items, behaviors = vocab.get("items"), vocab.get("behaviors")
    if not isinstance(items, list) or not isinstance(behaviors, list):
        raise ArtifactError(f"{path}: vocab.items and vocab.behaviors must be lists of IDs")
    if len(items) != mcfg.get("n_items") or len(behaviors) + 1 != mcfg.get("n_behaviors"):
        raise ArtifactError(f"{path}: the vocabulary sizes do not match the model's n_items/n_behaviors")
    return keyed
