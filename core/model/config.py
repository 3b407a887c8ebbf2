"""Validation of model and training settings: every bad value is a DataError naming the setting."""

from __future__ import annotations

import math
from typing import Any

from core.errors import DataError

# setting -> (type, low, high, low inclusive); None bound = open
_NUMBERS: dict[str, tuple[type, float | None, float | None, bool]] = {
    "epochs": (int, 1, None, True),
    "batch_size": (int, 1, None, True),
    "lr": (float, 0.0, None, True),
    "weight_decay": (float, 0.0, None, True),
    "n_negatives": (int, 1, None, True),
    "event_dropout": (float, 0.0, 1.0, True),
    "patience": (int, 1, None, True),
    "rating_refit_epochs": (int, 0, None, True),
    "bucket_pool": (int, 1, None, True),
    "request_gap": (float, 0.0, None, True),
    "seed": (int, None, None, True),
    "threads": (int, 1, None, True),
    "d_model": (int, 1, None, True),
    "n_layers": (int, 1, None, True),
    "n_heads": (int, 1, None, True),
    "max_len": (int, 1, None, True),
    "dropout": (float, 0.0, 1.0, True),
    "n_experts": (int, 1, None, True),
    "expert_dim": (int, 1, None, True),
}

_SWITCHES = ("use_text", "use_item_id", "use_request_time", "use_memory")


def check_number(name: str, value: Any) -> None:
    """Raise DataError unless ``value`` is a number of the right kind and range for ``name``."""
    kind, low, high, _ = _NUMBERS[name]
    if value is None and name == "threads":
        return
    ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (kind is float and not math.isfinite(value)):
        raise DataError(f"setting {name}={value!r}: expected {'an integer' if kind is int else 'a number'}")
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise DataError(f"setting {name}={value!r}: expected a value in {rng}")


def check_settings(values: dict[str, Any]) -> None:
    """Check every known numeric setting in ``values`` plus the loss settings."""
    for name, value in values.items():
        if name in _NUMBERS:
            check_number(name, value)
        if name in _SWITCHES and not isinstance(value, bool):
            raise DataError(f"setting {name}={value!r}: expected true or false")
    if "dropout" in values and values["dropout"] >= 1.0:
        raise DataError(f"setting dropout={values['dropout']!r}: expected a value below 1")
    weights = values.get("loss_weights")
    if weights is not None and weights != "uncertainty":
        if (not isinstance(weights, (list, tuple)) or len(weights) != 2
                or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or not math.isfinite(w) for w in weights)
                or sum(weights) <= 0):
            raise DataError(f"setting loss_weights={weights!r}: expected [w_engagement, w_rating], "
                            "two non-negative numbers not both zero, or \"uncertainty\"")
    if values.get("loss", "softmax") not in ("softmax", "bce"):
        raise DataError(f"setting loss={values['loss']!r}: expected softmax or bce")


def check_flag(name: str, value: Any) -> None:
    """A tri-state flag: True, False or None (auto)."""
    if value is not None and not isinstance(value, bool):
        raise DataError(f"setting {name}={value!r}: expected true, false or null (auto)")
