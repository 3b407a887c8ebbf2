"""The network's :class:`~core.model.config.ModelConfig` for a fit: the analyst's model settings (or an update's
parent's architecture) completed by what the data decides.

From the data: the catalogue and behavior sizes, the text width, the rating scale, the stand-in request gap
(the typical next-visit gap of the training events, unless set; not measured for a private run, whose release
would carry it), the repeat path (on where earlier items stay candidates, unless set) and the event text (off
where no event has a text, :mod:`core.model.event_text`). An update keeps its parent's settings.
"""

from __future__ import annotations

from typing import Any

from core.data.batches import Split, return_gap
from core.data.sequences import SequenceData
from core.model.config import ModelConfig
from core.model.event_text import event_text_setting
from core.model.protocol import Protocol, RatingScale
from core.model.warm_start import Parent


def model_config(
    settings: dict[str, Any],
    data: SequenceData,
    text_dim: int,
    split: Split,
    protocol: Protocol,
    scale: RatingScale,
    private: bool,
    warm: Parent | None = None,
) -> ModelConfig:
    """``settings``: the run's ``model`` settings; ``private``: trained with differential privacy."""
    model = dict(settings) if warm is None else warm.architecture()  # an update keeps its parent's
    if "request_gap" not in model and not private:  # the data's typical next-visit gap
        model["request_gap"] = return_gap(data, split.train_end)
    if model.get("use_repeat") is None:  # the repeat path ranks only where earlier items stay candidates
        model["use_repeat"] = not protocol.exclude_seen
    model = event_text_setting(model, data, warm is not None)
    return ModelConfig(
        n_items=data.n_items,
        n_behaviors=len(data.behaviors),
        text_dim=text_dim,
        value_mean=scale.mean,
        value_std=scale.std,
        **model,
    )
