"""How held-out events are scored (:class:`Protocol`, named in every figure) and how ratings are scaled."""

from __future__ import annotations

from dataclasses import dataclass
from types import EllipsisType
from typing import TypeVar

import numpy as np
import torch

from core.errors import DataError
from core.model import metrics as M

Scaled = TypeVar("Scaled", np.ndarray, torch.Tensor)
TargetChoice = str | None | EllipsisType  # a target behavior, None (the last event), or ``...``: the run's own
STANDIN, ACTUAL = "standin", "actual"
REQUEST_TIMES = (STANDIN, ACTUAL)
NEW_ITEMS = "new-items"  # the protocol that scores events on items held out of training (core.model.new_items)
PROTOCOLS = (M.FULL_PROTOCOL, NEW_ITEMS)  # what `behaviorlens evaluate --protocol` offers


def check_request_time(value: str) -> str:
    """``value`` if it names a request time (``standin`` or ``actual``), else a DataError naming both."""
    if value not in REQUEST_TIMES:
        raise DataError(f"request time {value!r}: expected standin (the default) or actual (target time known)")
    return value


def resolve_target(given: TargetChoice, own: str | None) -> str | None:
    """The target behavior asked for, ``...`` meaning ``own`` (the fitted protocol's)."""
    return own if isinstance(given, EllipsisType) else given


@dataclass(frozen=True)
class RatingScale:
    """Standardization of ratings: stored = (value - mean) / std."""

    mean: float = 0.0
    std: float = 1.0

    def restore(self, z: Scaled) -> Scaled:
        """Standardized values (array or tensor) back in value units."""
        return z * self.std + self.mean


@dataclass(frozen=True)
class Protocol:
    """How held-out events are scored; ``label`` names it in every figure."""

    exclude_seen: bool
    target_behavior: str | None = None
    negatives: int | None = None  # None = full ranking
    # When the held-out prediction is asked: "standin" = the last history event + the typical
    # next-visit gap (nothing of the held-out event is known); "actual" = the held-out event's time.
    request_time: str = STANDIN
    held_out_share: float = 0.0  # the share of items held out of training (core.model.held_out); 0 = none
    new_items: bool = False  # the targets are each user's last event on a held-out item (core.model.new_items)

    def varied(
        self, exclude_seen: bool | None, target: str | None, negatives: int | None, request_time: str | None
    ) -> Protocol:
        """This protocol with another target, negatives, and (when given) exclusion and request time."""
        return Protocol(
            self.exclude_seen if exclude_seen is None else exclude_seen,
            target,
            negatives,
            check_request_time(request_time or self.request_time),
            self.held_out_share,
        )

    def header(self) -> dict[str, str]:
        """The keys that name it in a figure's JSON: ``protocol``, ``label``, ``request_time``."""
        return {"protocol": self.name, "label": self.label, "request_time": self.request_time}

    @property
    def name(self) -> str:
        return NEW_ITEMS if self.new_items else M.protocol_name(self.negatives)

    @property
    def actual_time(self) -> bool:
        return self.request_time == ACTUAL

    @property
    def label(self) -> str:
        seen = "earlier items of any behavior excluded" if self.exclude_seen else "earlier items kept"
        target = f"last {self.target_behavior}" if self.target_behavior else "last event"
        held = f"{self.held_out_share * 100:g}% of items held out of training"
        if self.new_items:
            label = f"{M.protocol_name(self.negatives)} ranking, {seen}, target = {target} on a held-out item"
            return f"{label}, new items: {held}, asked at the stand-in time"
        label = f"{self.name} ranking, {seen}, target = {target}, leave-last-out"
        if self.held_out_share:
            label += f", {held} (their events left out)"
        if self.actual_time:
            return f"{label}, time-aware: target time known"
        return f"{label}, asked at the stand-in time"
