"""On-disk embedding cache: one folder per model fingerprint, ``.npy`` shards + a JSON index.

``index.json`` maps the sha256 of each text to a row of a shard in the same folder.
Shards are read with ``allow_pickle=False``; every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ArtifactError
from core.store.files import atomic_write, atomic_write_bytes
from core.store.permissions import private_dir

CACHE_FORMAT = 1


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Per-model folder of ``.npy`` shards plus a JSON index {text sha256: [shard, row]}."""

    def __init__(self, folder: Path, dim: int, model: str) -> None:
        self.folder, self.dim, self.model = folder, dim, model
        self.index_path = folder / "index.json"

    def _entries(self) -> dict[str, list[Any]]:
        """The index's {text sha256: [shard file, row]} map ({} before the first write)."""
        if not self.index_path.is_file():
            return {}
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
            ok = index["format"] == CACHE_FORMAT and index["dim"] == self.dim
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"embedding cache index {self.index_path} is unreadable: {exc}; delete its folder"
            ) from exc
        if not ok:
            raise ArtifactError(
                f"embedding cache index {self.index_path} does not match dim {self.dim}; delete its folder"
            )
        return index["entries"]

    def lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors for the keys that have one; each [D] float32."""
        entries, by_shard = self._entries(), dict[str, list[tuple[str, int]]]()
        for k in keys:
            if k in entries:
                by_shard.setdefault(entries[k][0], []).append((k, int(entries[k][1])))
        found: dict[str, np.ndarray] = {}
        for shard, pairs in by_shard.items():
            arr = self._load_shard(self.folder / shard, max(row for _, row in pairs))
            found.update((k, np.array(arr[row], dtype=np.float32)) for k, row in pairs)
        return found

    def _load_shard(self, path: Path, max_row: int) -> np.ndarray:
        """A shard as a read-only memory map: [n, D], checked to hold ``max_row``."""
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"embedding cache shard {path} is missing or unreadable: {exc}") from exc
        if arr.ndim != 2 or arr.shape[1] != self.dim or arr.shape[0] <= max_row:
            raise ArtifactError(
                f"embedding cache shard {path} has shape {arr.shape}; expected "
                f"(>{max_row}, {self.dim}); delete its folder"
            )
        return arr

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` [M, D] under ``keys``: one new shard, then the index."""
        private_dir(self.folder)
        shard = hashlib.sha256("".join(keys).encode()).hexdigest()[:20] + ".npy"
        data = vectors.astype(np.float32)  # [M, D]
        atomic_write(self.folder / shard, lambda f: np.save(f, data, allow_pickle=False))
        entries = self._entries()
        entries.update({k: [shard, i] for i, k in enumerate(keys)})
        index = {"format": CACHE_FORMAT, "dim": self.dim, "model": self.model, "entries": entries}
        atomic_write_bytes(self.index_path, json.dumps(index).encode("utf-8"))


def forget_texts(root: Path, texts: list[str]) -> int:
    """Remove the cached embeddings of ``texts`` from every cache under ``root``: their index entries go and
    their rows are zeroed in the shards (rewritten atomically). -> entries removed."""
    keys = {text_key(t) for t in texts}
    removed = 0
    if not keys or not root.is_dir():
        return 0
    for index_path in sorted(root.rglob("index.json")):
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            entries: dict[str, list[Any]] = index["entries"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"embedding cache index {index_path} is unreadable: {exc}; delete its folder") from exc
        rows: dict[str, list[int]] = {}
        for key in keys & set(entries):
            shard, row = entries.pop(key)
            rows.setdefault(str(shard), []).append(int(row))
        for shard, found in rows.items():
            path = index_path.parent / shard
            data = np.load(path, allow_pickle=False)
            data[found] = 0.0
            atomic_write(path, partial(np.save, arr=data, allow_pickle=False))
            removed += len(found)
        if rows:
            atomic_write_bytes(index_path, json.dumps(index).encode("utf-8"))
    return removed
