"""The ``encoder`` setting read (which folder, whether and how it is fine-tuned) and a run's saved adapter record.

No torch here: the settings schema (:mod:`core.model.config`) checks the setting with it. The fine-tuning itself
is :mod:`core.model.finetune`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core._checks import check_number, check_whole
from core.errors import DataError

FINETUNE = ("none", "lora", "full")
ADAPTER_FILE = "encoder_adapter.safetensors"
DEFAULT_LR = {"lora": 1e-4, "full": 2e-5}
KEYS = ("path", "finetune", "lora_rank", "lora_alpha", "lr", "grad_items")


@dataclass(frozen=True)
class EncoderSpec:
    """The ``encoder`` setting read: the folder and how (whether) it is fine-tuned."""

    path: str | None = None
    finetune: str = "none"
    lora_rank: int = 8
    lora_alpha: int | None = None  # None: 2 × lora_rank
    lr: float | None = None  # None: DEFAULT_LR of the mode
    grad_items: int = 32

    @property
    def tuned(self) -> bool:
        return self.finetune != "none"

    @property
    def alpha(self) -> int:
        return int(self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank)

    @property
    def learning_rate(self) -> float:
        return float(self.lr if self.lr is not None else DEFAULT_LR.get(self.finetune, 0.0))


def encoder_spec(value: Any, name: str = "encoder") -> EncoderSpec:
    """The ``encoder`` setting (a folder, null, or an object of :data:`KEYS`) as an EncoderSpec; DataError naming
    the key, the value and what was expected."""
    if value is None or isinstance(value, str):
        return EncoderSpec(path=value)
    if not isinstance(value, dict):
        raise DataError(f"setting {name}={value!r}: expected a model folder, null, or an object with keys {KEYS}")
    bad = sorted(set(value) - set(KEYS))
    if bad:
        raise DataError(f"unknown {name} setting(s) {bad}: expected some of {list(KEYS)}")
    path = value.get("path")
    if path is not None and not isinstance(path, str):
        raise DataError(f"setting {name}.path={path!r}: expected a model folder or null (the bundled encoder)")
    mode = value.get("finetune", "none")
    if mode not in FINETUNE:
        raise DataError(f"setting {name}.finetune={mode!r}: expected one of {', '.join(FINETUNE)}")
    rank = value.get("lora_rank", 8)
    check_whole(f"setting {name}.lora_rank", rank, 1, 256)
    grad_items = value.get("grad_items", 32)
    check_whole(f"setting {name}.grad_items", grad_items, 1)
    if value.get("lora_alpha") is not None:
        check_whole(f"setting {name}.lora_alpha", value["lora_alpha"], 1)
    if value.get("lr") is not None:
        check_number(f"setting {name}.lr", value["lr"], 0.0)
        if value["lr"] <= 0:
            raise DataError(f"setting {name}.lr={value['lr']!r}: expected a positive number")
    return EncoderSpec(path, mode, int(rank), value.get("lora_alpha"), value.get("lr"), int(grad_items))


def check_encoder_setting(name: str, value: Any) -> None:
    """The config schema's check of ``encoder`` (core.model.config)."""
    encoder_spec(value, name)


def encoder_folder(value: Any) -> str | None:
    """The model folder of an ``encoder`` setting (None: the bundled encoder)."""
    return encoder_spec(value).path


@dataclass(frozen=True)
class Adapter:
    """A run's saved fine-tuning: the mode, LoRA's shape, the file and its checksum (``config.json``
    ``encoder_adapter``); ``folder`` is the run's."""

    finetune: str
    sha256: str
    base_fingerprint: str
    lora_rank: int = 0
    lora_alpha: int = 0
    target_modules: list[str] = field(default_factory=list)
    folder: Path | None = None

    @property
    def fingerprint(self) -> str:
        """The adapted encoder's fingerprint (what its cached vectors are keyed by)."""
        return tuned_fingerprint(self.base_fingerprint, self.sha256)

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        del out["folder"]
        return out

    @classmethod
    def read(cls, record: dict[str, Any] | None, folder: Path) -> Adapter | None:
        if not record:
            return None
        keys = ("finetune", "sha256", "base_fingerprint", "lora_rank", "lora_alpha", "target_modules")
        return cls(**{k: record[k] for k in keys if k in record}, folder=folder)


def tuned_fingerprint(base: str, adapter_sha256: str) -> str:
    """The fingerprint of an adapted encoder: the base encoder's and the adapter file's checksum together."""
    return hashlib.sha256(f"{base}+{adapter_sha256}".encode()).hexdigest()
