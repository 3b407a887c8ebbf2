"""Safe model files: safetensors for tensors, JSON for everything else, checksums on both.

Never pickle, never ``torch.load``. A file that is pickled, modified after it was
written, or does not fit the architecture its config describes is refused with
:class:`~core.errors.ArtifactError`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from core.errors import ArtifactError
from core.store.workspace import atomic_write_bytes, atomic_write_json

FORMAT = "behaviorlens-run/1"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save zip archive


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_like_safetensors(data: bytes) -> bool:
    """A little-endian u64 header length that fits the file, then a JSON object."""
    if len(data) < 9:
        return False
    size = int.from_bytes(data[:8], "little")
    return 8 + size <= len(data) and data[8:9] == b"{"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors as safetensors (atomically); return the file's sha256."""
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def load_tensors(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Read a safetensors file, refusing pickles and files whose checksum does not match."""
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    data = path.read_bytes()
    if not _looks_like_safetensors(data) and data.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a pickled file: only safetensors checkpoints are loaded (pickles can run code)")
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise ArtifactError(f"{path} does not match the checksum recorded in its config: it was modified or replaced")
    try:
        return st_load(data)
    except (SafetensorError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a valid safetensors file ({exc})") from exc


def save_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_json(path, obj)


def load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return obj


def _config_digest(config: dict[str, Any]) -> str:
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return sha256_bytes(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def seal_config(config: dict[str, Any]) -> dict[str, Any]:
    """Add ``config_sha256``, a checksum over the rest of the config."""
    return {**config, "config_sha256": _config_digest(config)}


REQUIRED_KEYS = ("format", "settings", "model_config", "weights_sha256", "protocol", "rating_scale", "vocab")


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
    if len(vocab.get("items", [])) != mcfg.get("n_items") or len(vocab.get("behaviors", [])) + 1 != mcfg.get("n_behaviors"):
        raise ArtifactError(f"{path}: the vocabulary sizes do not match the model's n_items/n_behaviors")


def finite_or_none(obj: Any) -> Any:
    """Replace NaN/inf floats by None, recursively, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``module``; any missing, extra or mis-shaped tensor is refused."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or shapes:
        raise ArtifactError(
            f"{path} does not fit the architecture in its config: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, wrong shape {sorted(shapes)[:5]}"
        )
    module.load_state_dict(state)
