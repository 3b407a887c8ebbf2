"""``Fitted``: a model with what it is trained and evaluated against, the bundle model-level functions take;
and :func:`pick_device`, the device it runs on.

Training, the rating refit and evaluation all need the same six things; passing them
as one object keeps their signatures short and makes "the same model on another split
or protocol" a :func:`dataclasses.replace` away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.data.batches import Split
from core.data.sequences import SequenceData
from core.errors import DataError
from core.model.network import BehaviorModel
from core.model.protocol import Protocol, RatingScale


@dataclass(frozen=True)
class Fitted:
    """A model, its indexed data, the held-out split, the evaluation protocol, the rating scale and the device."""

    model: BehaviorModel
    data: SequenceData
    split: Split
    protocol: Protocol
    scale: RatingScale
    device: torch.device


def pick_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise DataError(f"device {device!r}: expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("device 'cuda' was asked for but no CUDA GPU is available; use --device auto or cpu")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
