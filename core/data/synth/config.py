"""The generator's parameters, constants and output type: :class:`SynthConfig` (validated on
construction), the default planted behavior weights, the funnel order, the file names and
columns of the written sample, :class:`SyntheticData`, and the parsing and validation of
behavior -> weight mappings (errors are :class:`~core.errors.DataError` naming the bad value)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from core._checks import check_number
from core.data.synth.words import CATEGORIES
from core.errors import DataError
from core.schema import (
    BEHAVIOR,
    CANONICAL_BEHAVIORS,
    CART,
    CLICK,
    FAVORITE,
    ITEM_CATEGORY,
    ITEM_ID,
    ITEM_TITLE,
    PURCHASE,
    RATE,
    REVIEW,
    SHARE,
    TEXT,
    TIMESTAMP,
    USER_ID,
    VALUE,
    VIEW,
)

GENERATOR_VERSION = "1.1"
EVENTS_FILE = "events.csv"
ITEMS_FILE = "items.csv"
TRUTH_FILE = "ground_truth.json"

# Item columns beyond the ones named in core.schema.
ITEM_DESCRIPTION = "description"
ITEM_BRAND = "brand"
ITEM_PRICE = "price"
ITEM_FIELDS: tuple[str, ...] = (
    ITEM_ID,
    ITEM_TITLE,
    ITEM_DESCRIPTION,
    ITEM_CATEGORY,
    ITEM_BRAND,
    ITEM_PRICE,
)
EVENT_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, TIMESTAMP, BEHAVIOR, VALUE, TEXT)

DEFAULT_BEHAVIOR_WEIGHTS: dict[str, float] = {
    VIEW: 0.3,
    CLICK: 0.6,
    FAVORITE: 1.0,
    CART: 1.4,
    PURCHASE: 2.0,
    RATE: 0.8,
    REVIEW: 1.2,
    SHARE: 0.5,
}

# Funnel steps in session order; index = column of the per-session flag matrix.
FUNNEL_ORDER: tuple[str, ...] = (VIEW, CLICK, FAVORITE, CART, PURCHASE, RATE, REVIEW, SHARE)
_STEP = {b: k for k, b in enumerate(FUNNEL_ORDER)}
_DAY = 86_400


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of the generator; construction validates them.

    Funnel probabilities are conditional: ``p_click`` given a view, ``p_favorite``,
    ``p_cart`` and ``p_share`` given a click, ``p_purchase`` given a cart,
    ``p_rate`` and ``p_review`` given a purchase; with probability ``p_loose`` a step's
    prerequisite is waived (it then happens with its own probability). Ratings:
    ``rating_base`` + ``rating_quality_gain`` * item quality + user leniency (sd
    ``rating_user_sd``) + ``rating_pref_gain`` * category affinity + noise, rounded into 1..5.
    """

    seed: int = 7
    n_users: int = 800
    n_items: int = 400
    n_categories: int = 10
    weeks: int = 8
    start: str = "2026-03-02"
    target_events: int = 60_000
    behavior_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BEHAVIOR_WEIGHTS))
    tau_seconds: float = 7.0 * _DAY
    beta_pref: float = 1.0
    beta_pop: float = 0.5
    sim_brand: float = 0.6
    sim_category: float = 0.35
    pref_concentration: float = 0.5
    activity_sigma: float = 0.5
    max_sessions_factor: float = 3.0
    p_click: float = 0.55
    p_favorite: float = 0.2
    p_cart: float = 0.35
    p_purchase: float = 0.55
    p_rate: float = 0.45
    p_review: float = 0.3
    p_share: float = 0.05
    p_loose: float = 0.25
    rating_base: float = 3.5
    rating_pref_gain: float = 0.0
    rating_quality_gain: float = 0.9
    rating_user_sd: float = 0.5
    rating_noise: float = 0.8
    min_session_gap_seconds: int = 2 * 3600
    step_gap_mean_seconds: float = 45.0
    step_gap_max_seconds: int = 600

    def __post_init__(self) -> None:
        object.__setattr__(self, "behavior_weights", validate_weights(self.behavior_weights))
        _validate_counts(self)
        _validate_rates(self)

    @classmethod
    def small(cls, seed: int = 7, **overrides: object) -> SynthConfig:
        """A fast config for tests: ~150 users, 120 items, ~8k events."""
        settings: dict[str, object] = {
            "seed": seed,
            "n_users": 150,
            "n_items": 120,
            "target_events": 8_000,
        }
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SyntheticData:
    """A generated sample: events and items in the data contract, plus the truth."""

    events: pd.DataFrame  # EVENT_COLUMNS, sorted by (timestamp, user, sequence)
    items: pd.DataFrame  # ITEM_FIELDS
    truth: dict[str, object]


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check a behavior -> weight mapping; return it as floats in canonical order."""
    if not isinstance(weights, Mapping):
        raise DataError(f"behavior_weights must be a mapping, got {type(weights).__name__}")
    for key, value in weights.items():
        if key not in CANONICAL_BEHAVIORS:
            raise DataError(
                f"behavior_weights: unknown behavior {key!r} (value {value!r}); "
                f"expected one of {', '.join(CANONICAL_BEHAVIORS)}"
            )
        check_number(f"behavior_weights[{key!r}] =", value, 0)
    missing = [b for b in CANONICAL_BEHAVIORS if b not in weights]
    if missing:
        raise DataError(f"behavior_weights: missing weight for {', '.join(missing)}")
    return {b: float(weights[b]) for b in CANONICAL_BEHAVIORS}


def parse_weights(spec: str) -> dict[str, float]:
    """Parse 'view=0.3,click=0.6' into overrides of DEFAULT_BEHAVIOR_WEIGHTS (validated)."""
    weights = dict(DEFAULT_BEHAVIOR_WEIGHTS)
    for piece in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = piece.partition("=")
        if not sep:
            raise DataError(f"--weights: {piece!r} is not behavior=weight")
        try:
            weights[key.strip()] = float(raw)
        except ValueError as exc:
            raise DataError(f"--weights: {key.strip()!r} = {raw!r} is not a number") from exc
    return validate_weights(weights)


def _validate_counts(config: SynthConfig) -> None:
    """Counts and scales must be positive and mutually consistent."""
    checks = {
        "n_users": config.n_users >= 1,
        "weeks": config.weeks >= 1,
        "n_categories": 1 <= config.n_categories <= len(CATEGORIES),
        "n_items": config.n_items >= config.n_categories,
        "target_events": config.target_events >= 2 * config.n_users,
        "tau_seconds": config.tau_seconds > 0,
        "pref_concentration": config.pref_concentration > 0,
        "activity_sigma": config.activity_sigma >= 0,
        "rating_noise": config.rating_noise >= 0,
        "rating_user_sd": config.rating_user_sd >= 0,
        "max_sessions_factor": config.max_sessions_factor >= 1,
        "min_session_gap_seconds": config.min_session_gap_seconds > 8 * config.step_gap_max_seconds,
        "step_gap_max_seconds": config.step_gap_max_seconds >= 1,
    }
    for name, ok in checks.items():
        if not ok:
            raise DataError(f"SynthConfig.{name} = {getattr(config, name)!r} is out of range")
    try:
        _start_epoch(config.start)
    except ValueError as exc:
        raise DataError(f"SynthConfig.start = {config.start!r}: expected YYYY-MM-DD") from exc


def _validate_rates(config: SynthConfig) -> None:
    """Funnel probabilities lie in [0, 1]; similarities in [0, 1]."""
    names = (
        "p_click",
        "p_favorite",
        "p_cart",
        "p_purchase",
        "p_rate",
        "p_review",
        "p_share",
        "p_loose",
        "sim_brand",
        "sim_category",
    )
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise DataError(f"SynthConfig.{name} = {value!r}: expected a value in [0, 1]")


def _start_epoch(start: str) -> int:
    """Seconds since the Unix epoch of ``start`` (YYYY-MM-DD) at 00:00 UTC."""
    day = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp())
