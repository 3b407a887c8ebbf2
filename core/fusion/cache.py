"""Cached candidates on disk: ``<key>.safetensors`` + ``<key>.json`` in the run folder's ``fusion/``.

The JSON names the tensors' checksum and what the candidates were computed with (the model's
weights checksum, the protocol, the pre-selection sizes); a stale, partly written or altered
cache is not loaded, and the caller rebuilds it from the model.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import ArtifactError
from core.fusion.ranking import Candidates
from core.store.files import load_json, load_tensors, save_json, save_tensors

CACHE_FORMAT = "behaviorlens-fusion/2"  # 2: an earlier-seen target is a miss, stand-in request time


def write_cache(folder: Path, key: str, c: Candidates, meta: dict[str, Any]) -> None:
    """``<key>.safetensors`` then ``<key>.json`` (with the tensors' checksum), both atomic."""
    tensors = {f.name: torch.from_numpy(np.ascontiguousarray(getattr(c, f.name))) for f in fields(Candidates)}
    digest = save_tensors(folder / f"{key}.safetensors", tensors)
    save_json(folder / f"{key}.json", {**meta, "format": CACHE_FORMAT, "tensors_sha256": digest})


def read_cache(folder: Path, key: str, expect: dict[str, Any]) -> tuple[Candidates, dict[str, Any]] | None:
    """The cached candidates when they exist and match ``expect`` (model checksum, protocol...); else None.

    A stale, partly written or altered cache is not loaded: the caller rebuilds it from the model.
    """
    meta_path, path = folder / f"{key}.json", folder / f"{key}.safetensors"
    if not meta_path.is_file() or not path.is_file():
        return None
    meta = load_json(meta_path)
    if meta.get("format") != CACHE_FORMAT or any(meta.get(k) != v for k, v in expect.items()):
        return None
    try:
        tensors = load_tensors(path, meta.get("tensors_sha256"))
    except ArtifactError:
        return None  # a different write of the sidecar, or an altered file: recomputed by the caller
    names = {f.name for f in fields(Candidates)}
    if set(tensors) != names:
        return None
    return Candidates(**{name: tensors[name].numpy() for name in names}), meta
