"""The one result type of every attribution method: :class:`Explanation`.

An explanation answers "why does this user get this item?" for one target
(``engagement``: log-probability of the item; ``rating``: predicted rating;
``fused``: the run's fused ranking score) as one signed number per event of the
user's history. Attributions are in the target's own units: for methods with a
completeness property (IG, SHAP) they sum to ``score - baseline_score``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from core._checks import finite_or_none

TARGETS: tuple[str, ...] = ("engagement", "rating", "fused")
TARGET_UNITS = {
    "engagement": "log-probability of the item (softmax over every item)",
    "rating": "predicted rating, in the dataset's value units",
    "fused": "fused ranking score in [0, 1] (the run's fusion weights)",
}


@dataclass
class EventAttribution:
    """One event of the explained history and its attribution."""

    position: int  # 0 = oldest event of the explained window, n-1 = the newest
    behavior: str
    item: str  # original item ID
    title: str | None
    item_text: str | None
    time: str  # ISO 8601, UTC
    value: float | None
    attribution: float


@dataclass
class Explanation:
    """Per-event attributions of one (user, item, target) by one method, with faithfulness figures.

    ``score`` is the target with every event, ``baseline_score`` with every event masked
    (swapped for the model's mask token, positions kept). ``completeness_delta`` is
    Σ attributions − (score − baseline_score) for methods that promise completeness
    (IG, SHAP), else None. ``aopc`` / ``aopc_random``: area over the deletion curve
    when events are removed in decreasing attribution order / in random orders.
    """

    user: str
    item: str
    target: str
    method: str
    events: list[EventAttribution]
    score: float
    baseline_score: float
    completeness_delta: float | None
    runtime_ms: float
    aopc: float | None = None
    aopc_random: float | None = None
    heuristic: bool = False
    item_title: str | None = None
    run: str | None = None
    units: str = ""
    deletion_curve: list[float] = field(default_factory=list)  # [n+1] score after k removals
    random_deletion_curve: list[float] = field(default_factory=list)  # [n+1] mean over random orders
    faithfulness_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # method settings (steps, samples, weights...)

    @property
    def attributions(self) -> list[float]:
        """The attributions in event order (oldest first)."""
        return [e.attribution for e in self.events]

    @property
    def relative_delta(self) -> float | None:
        """|completeness_delta| / |score − baseline_score|; None without a delta or a gap."""
        gap = abs(self.score - self.baseline_score)
        if self.completeness_delta is None or gap == 0:
            return None
        return abs(self.completeness_delta) / gap

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that is strict JSON: NaN and infinities become None."""
        out = asdict(self)
        out["relative_delta"] = self.relative_delta
        return finite_or_none(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)
