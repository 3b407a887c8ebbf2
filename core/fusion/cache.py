"""Cached candidates on disk: ``<key>.safetensors`` + ``<key>.json`` in the run folder's ``fusion/``.

The JSON names the tensors' checksum and what the candidates were computed with (the model's
weights checksum, the protocol, the pre-selection sizes); a stale, partly written or altered
cache is not loaded, and the caller rebuilds it from the model. A sidecar that is no JSON object
(truncated, edited, of another shape) is rebuilt too, with a logged warning.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import ArtifactError
from core.fusion.ranking import Candidates
from core.store.files import load_json, load_tensors, save_json, save_tensors

CACHE_FORMAT = "behaviorlens-fusion/2"  # 2: an earlier-seen target is a miss, stand-in request time
_LOG = logging.getLogger(__name__)


def write_cache(folder: Path, key: str, c: Candidates, meta: dict[str, Any]) -> None:
    """``<key>.safetensors`` then ``<key>.json`` (with the tensors' checksum), both atomic."""
    tensors = {f.name: torch.from_numpy(np.ascontiguousarray(getattr(c, f.name))) for f in fields(Candidates)}
    digest = save_tensors(folder / f"{key}.safetensors", tensors)
    save_json(folder / f"{key}.json", {**meta, "format": CACHE_FORMAT, "tensors_sha256": digest})


def read_cache(
    folder: Path, key: str, expect: dict[str, Any], per_row: tuple[str, ...] = ()
) -> tuple[Candidates, dict[str, Any]] | None:
    """The cached candidates when they exist and match ``expect`` (model checksum, protocol...); else None.

    A stale, partly written or altered cache is not loaded: the caller rebuilds it from the model. The
    sidecar must be a JSON object; each of its fields ``per_row`` a list of strings, one per candidate row.
    """
    meta_path, path = folder / f"{key}.json", folder / f"{key}.safetensors"
    if not meta_path.is_file() or not path.is_file():
        return None
    try:
        meta = load_json(meta_path)
    except ArtifactError as exc:
        _LOG.warning("fusion cache %s is unreadable, rebuilding it: %s", meta_path, exc)
        return None
    if meta.get("format") != CACHE_FORMAT or any(meta.get(k) != v for k, v in expect.items()):
        return None
    try:
        tensors = load_tensors(path, meta.get("tensors_sha256"))
    except ArtifactError:
        return None  # a different write of the sidecar, or an altered file: recomputed by the caller
    names = {f.name for f in fields(Candidates)}
    if set(tensors) != names:
        return None
    cands = Candidates(**{name: tensors[name].numpy() for name in names})
    for name in per_row:
        rows = meta.get(name)
        if not isinstance(rows, list) or len(rows) != len(cands.users) or not all(isinstance(r, str) for r in rows):
            _LOG.warning("fusion cache %s: %s is not a list of one string per row, rebuilding it", meta_path, name)
            return None
    return cands, meta
