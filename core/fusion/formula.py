"""Ranking fusion: one weighted sum of normalized signals, re-ranked from cached head outputs.

The formula (also shown on the Fusion page)::

    score(u, i) = Σ_k w_k · s_k(u, i),   w_k ≥ 0,  Σ_k w_k = 1,  every s_k(u, i) in [0, 1]

so a fused score lies in [0, 1]. Weights are given as non-negative numbers, not all
zero, and divided by their sum. The signals, each normalized into [0, 1]:

- ``engagement``: the engagement head is trained with a full softmax over items, so
  its logit is not a sigmoid probability. We take the softmax probability p_i and
  min-max it per user over the user's candidate items:
  (p_i - min_c p_c) / (max_c p_c - min_c p_c). The user's best item is 1, the worst
  candidate 0, and the model's confidence is kept (≈ p_i / p_max). It is a strictly
  increasing function of the log-probability ``evaluate`` ranks by, computed in
  float64, so engagement alone ranks exactly as ``evaluate`` does.
- ``rating``: the predicted rating rescaled with the dataset's value range,
  clip((r - lo) / (hi - lo), 0, 1), lo and hi the smallest and largest observed value.
- ``popularity``: log(1 + n_i) / log(1 + max_j n_j), n_i the item's events (log:
  counts are heavy-tailed).
- ``freshness``: (t_i - t_min) / (t_max - t_min), t_i the time of the item's latest
  event; 0 for items without events.

A signal that does not vary (no values, one candidate) is 0 everywhere. Equal fused
scores rank the smaller item index first, as in :mod:`core.model.metrics`. This module is the
only place the formula and the signals are written down: re-ranking the cached candidates
(:mod:`core.fusion.ranking`), choosing them (:mod:`core.fusion.candidates`) and the fused target
that explanations attribute (:mod:`core.explain.fused`) all call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core._checks import is_finite_number
from core.errors import DataError

ENGAGEMENT, RATING, POPULARITY, FRESHNESS = "engagement", "rating", "popularity", "freshness"
SIGNALS: tuple[str, ...] = (ENGAGEMENT, RATING, POPULARITY, FRESHNESS)
FORMULA = r"\mathrm{score}(u,i) = \sum_k w_k \, s_k(u,i), \quad w_k \ge 0,\ \sum_k w_k = 1,\ s_k \in [0, 1]"
K = 10


# -- weights ------------------------------------------------------------------------------
def parse_weights(text: str) -> dict[str, float]:
    """``"engagement=0.7,rating=0.3"`` -> raw weights (unnamed signals 0); not yet normalized."""
    raw: dict[str, Any] = {}
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise DataError(f"weights {text!r}: expected NAME=VALUE pairs such as engagement=0.7,rating=0.3")
        if name in raw:
            raise DataError(f"weight {name!r} is given twice in {text!r}")
        try:
            raw[name] = float(value)
        except ValueError:
            raise DataError(f"weight {name}={value.strip()!r}: expected a number") from None
    if not raw:
        raise DataError(f"weights {text!r}: expected NAME=VALUE pairs such as engagement=0.7,rating=0.3")
    return normalize_weights(raw)


def normalize_weights(weights: Mapping[str, Any]) -> dict[str, float]:
    """Validate weights and divide them by their sum; every signal is in the result (missing = 0)."""
    out = {}
    for name, value in weights.items():
        if name not in SIGNALS:
            raise DataError(f"weight {name!r} is not a signal: expected some of {', '.join(SIGNALS)}")
        if not is_finite_number(value):
            raise DataError(f"weight {name}={value!r}: expected a finite number")
        if value < 0:
            raise DataError(f"weight {name}={value!r}: weights must be non-negative")
        out[name] = float(value)
    total = sum(out.values())
    if total <= 0:
        raise DataError(f"weights are all zero: give at least one of {', '.join(SIGNALS)} a positive weight")
    return {name: out.get(name, 0.0) / total for name in SIGNALS}


def format_weights(weights: Mapping[str, float]) -> str:
    """``engagement=0.7,rating=0.3`` (zero weights left out)."""
    return ",".join(f"{k}={v:.6g}" for k, v in weights.items() if v > 0)


# -- signals ------------------------------------------------------------------------------
# Each function below is the one definition of its part of the formula. They take NumPy arrays
# (the cached candidates, the Fusion page) or torch tensors (the differentiable fused target that
# explanations attribute, core.explain.fused), so both read the same expressions.
def scale_probability(relative: Any, low: Any) -> Any:
    """The engagement signal from p_i / p_max and the user's lowest candidate ratio: (rel - low) / (1 - low)."""
    return (relative - low) / (1.0 - low)


def minmax_probability(log_probs: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Engagement signal [B, N] float64: softmax probabilities min-maxed over each row's eligible items."""
    lp = np.where(eligible, log_probs.astype(np.float64), -np.inf)
    top = lp.max(1, keepdims=True)
    p = np.exp(lp - np.where(np.isfinite(top), top, 0.0))  # p / p_max, 0 where not eligible
    low = np.where(eligible, p, np.inf).min(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(eligible & (low < 1.0), scale_probability(p, low), 0.0)
    return out


def scale_rating(ratings: Any, value_range: tuple[float, float] | None) -> Any:
    """clip((r - lo) / (hi - lo), 0, 1) of predicted ratings (array or tensor); 0 without a value range."""
    if value_range is None or not value_range[1] > value_range[0]:
        return ratings * 0
    lo, hi = value_range
    return ((ratings - lo) / (hi - lo)).clip(0.0, 1.0)


def rating_signal(ratings: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """The rating signal of predicted ratings, as float32."""
    return np.asarray(scale_rating(np.asarray(ratings, dtype=np.float32), value_range), dtype=np.float32)


def popularity_signal(counts: np.ndarray) -> np.ndarray:
    """log(1 + n_i) / log(1 + max n) as float32 [N+1]; 0 everywhere when nothing has events."""
    c = np.asarray(counts, dtype=np.float64)
    top = c.max() if c.size else 0.0
    return (np.log1p(c) / np.log1p(top) if top > 0 else np.zeros_like(c)).astype(np.float32)


def freshness_signal(last_seen: np.ndarray) -> np.ndarray:
    """(t_i - t_min) / (t_max - t_min) over items with events (NaN = none -> 0), float32 [N+1]."""
    t = np.asarray(last_seen, dtype=np.float64)
    seen = ~np.isnan(t)
    if not seen.any() or t[seen].max() == t[seen].min():
        return np.zeros(t.shape, np.float32)
    lo, hi = t[seen].min(), t[seen].max()
    return np.where(seen, (np.nan_to_num(t) - lo) / (hi - lo), 0.0).astype(np.float32)


def fuse(signals: Mapping[str, Any], weights: Mapping[str, Any]) -> Any:
    """The formula: Σ_k w_k · s_k over the signals given (the others count 0), with normalized weights.

    Signals are NumPy arrays (summed in float64), torch tensors or numbers, of one shape or
    broadcastable. Terms are added in ``SIGNALS`` order and zero weights are skipped (x + 0.0 == x),
    so a partial sum plus the rest equals the whole, bit for bit. 0.0 when no weighted signal is given.
    """
    w = normalize_weights(weights)
    total: Any = None
    for name in SIGNALS:
        if name not in signals or not w[name]:
            continue
        value = signals[name]
        term = w[name] * (value.astype(np.float64, copy=False) if isinstance(value, np.ndarray) else value)
        total = term if total is None else total + term
    return 0.0 if total is None else total


def weight_grid(step: float = 0.25, signals: tuple[str, ...] = SIGNALS) -> list[dict[str, float]]:
    """Every point of the weight simplex over ``signals`` with coordinates on a ``step`` grid."""
    n = round(1 / step)
    if n < 1 or abs(n * step - 1) > 1e-9:
        raise DataError(f"sweep step {step!r}: expected 1/n for a whole number n, such as 0.25")
    points: list[dict[str, float]] = []

    def fill(prefix: list[int], left: int) -> None:
        if len(prefix) == len(signals) - 1:
            points.append({s: v / n for s, v in zip(signals, prefix + [left])})
            return
        for v in range(left, -1, -1):
            fill(prefix + [v], left - v)

    fill([], n)
    return points
