"""Safe files, the one place that writes them: atomic writes, safetensors for tensors, JSON for the rest.

Every file is written atomically (a temp file in the same folder, flushed, then renamed
into place): a reader sees the old file or the new one, never half of one. Files are 0600
and the folders made for them 0700, whatever the umask (:mod:`core.store.permissions`). Tensors are
safetensors with a checksum; never pickle, never ``torch.load``. A file that is pickled,
modified after it was written, or does not fit the module it is loaded into is refused
with :class:`~core.errors.ArtifactError`. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.errors import ArtifactError
from core.store.permissions import FILE_MODE, private_dir

if TYPE_CHECKING:  # torch and safetensors load when tensors are written or read, not for JSON
    import torch

_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ / torch.save zip archive


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temp file next to ``path``, flush it to disk, then rename it into place."""
    path = Path(path)
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)  # mkstemp's 0600 is masked by the umask
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_like_safetensors(data: bytes) -> bool:
    """A little-endian u64 header length that fits the file, then a JSON object."""
    if len(data) < 9:
        return False
    size = int.from_bytes(data[:8], "little")
    return 8 + size <= len(data) and data[8:9] == b"{"


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """Tensors serialized as a safetensors file's bytes."""
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write tensors as safetensors (atomically); return the file's sha256."""
    data = tensor_bytes(tensors)
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
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        return st_load(data)
    except (SafetensorError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a valid safetensors file ({exc})") from exc


def save_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted UTF-8 JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


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
