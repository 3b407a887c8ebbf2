"""One progress-callback shape for every long operation: ``progress(event)`` with one dict per event.

Every event has ``"event"`` (what is being done: ``ingest``, ``encode``, ``step``, ``epoch``,
``rating_refit``, ``users``, ``behaviors``) and, where the work is counted, ``"done"`` and
``"total"`` (so ``done / total`` is the share finished); an operation may add fields of its
own (a training step adds ``epoch``, ``step``, ``steps`` and ``loss``; an ingest stage adds
``stage``). The CLI prints events, the pages draw them as progress bars, a training job folds
them into its snapshot. ``cancel()`` is read between steps: True asks the operation to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[dict[str, Any]], None]
CancelFn = Callable[[], bool]


def report(progress: ProgressFn | None, event: str, done: float, total: float, **fields: Any) -> None:
    """Send one event to ``progress`` (nothing when it is None)."""
    if progress is not None:
        progress({"event": event, "done": done, "total": total, **fields})


def fraction(event: dict[str, Any]) -> float:
    """The share of the work an event says is finished, in [0, 1] (1 when it counts nothing)."""
    total = float(event.get("total") or 0)
    return min(1.0, max(0.0, float(event.get("done") or 0) / total)) if total > 0 else 1.0
