"""The sample-data generator with a planted truth.

It builds a product catalogue (realistic English titles and descriptions), users
with category preferences, and a behavior funnel per session
(view -> click -> favorite / cart -> purchase -> rate / review, occasional share).

The planted truth is the oracle for the influence code. Each behavior type ``b``
has a known per-event influence weight ``w_b``. The target item of a user's next
session is drawn from ``softmax(score)`` over all items, with::

    score(j) = beta_pref * pref[u, cat(j)] + beta_pop * popularity[j]
             + sum over ALL the user's earlier events e of
               w[behavior(e)] * exp(-(t_now - t_e) / tau) * sim(j, item(e))

    sim(j, i) = 1 if j == i, sim_brand if same brand and category,
                sim_category if same category, else 0

Two choices keep the truth identifiable from the data. Each funnel step may also
happen without its prerequisite (``p_loose``), so that no behavior implies another (in a
strictly nested funnel a review always comes with a purchase, and no model can tell
their effects apart). Ratings follow the item's quality and the user's leniency, latent
draws that never enter the score, so a rating event moves choices by its weight alone.

The exponential decay makes the sum a running state per user (no history
window), so the whole sample is vectorized over users with numpy.
Output is deterministic by seed: regenerating gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataError
from core.data.synth_words import CATEGORIES, REVIEW_TEMPLATES, Category
from core.schema import (
    BEHAVIOR, CANONICAL_BEHAVIORS, CART, CLICK, FAVORITE, ITEM_CATEGORY, ITEM_ID,
    ITEM_TITLE, PURCHASE, RATE, REVIEW, SHARE, TEXT, TIMESTAMP, USER_ID, VALUE, VIEW,
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
    ITEM_ID, ITEM_TITLE, ITEM_DESCRIPTION, ITEM_CATEGORY, ITEM_BRAND, ITEM_PRICE,
)
EVENT_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, TIMESTAMP, BEHAVIOR, VALUE, TEXT)

DEFAULT_BEHAVIOR_WEIGHTS: dict[str, float] = {
    VIEW: 0.3, CLICK: 0.6, FAVORITE: 1.0, CART: 1.4,
    PURCHASE: 2.0, RATE: 0.8, REVIEW: 1.2, SHARE: 0.5,
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
    behavior_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_BEHAVIOR_WEIGHTS))
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
            "seed": seed, "n_users": 150, "n_items": 120, "target_events": 8_000,
        }
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SyntheticData:
    """A generated sample: events and items in the data contract, plus the truth."""

    events: pd.DataFrame   # EVENT_COLUMNS, sorted by (timestamp, user, sequence)
    items: pd.DataFrame    # ITEM_FIELDS
    truth: dict[str, object]


@dataclass(frozen=True)
class _RatingTaste:
    """Latent draws behind ratings only (they never enter the choice score)."""

    quality: np.ndarray    # [N] item quality, standard normal
    leniency: np.ndarray   # [U] user rating bias, N(0, rating_user_sd)

    @classmethod
    def draw(cls, config: SynthConfig) -> _RatingTaste:
        # A separate stream, so rating settings leave every choice and time unchanged.
        rng = np.random.default_rng([config.seed, 1])
        quality = np.round(rng.standard_normal(config.n_items), 6)
        return cls(quality, np.round(config.rating_user_sd * rng.standard_normal(config.n_users), 6))


@dataclass(frozen=True)
class _Catalogue:
    frame: pd.DataFrame
    category: np.ndarray   # [N] category index
    brand: np.ndarray      # [N] global brand index
    ptype: list[str]
    attr: list[str]


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check a behavior -> weight mapping; return it as floats in canonical order."""
    if not isinstance(weights, Mapping):
        raise DataError(f"behavior_weights must be a mapping, got {type(weights).__name__}")
    for key, value in weights.items():
        if key not in CANONICAL_BEHAVIORS:
            raise DataError(
                f"behavior_weights: unknown behavior {key!r} (value {value!r}); "
                f"expected one of {', '.join(CANONICAL_BEHAVIORS)}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or value < 0:
            raise DataError(
                f"behavior_weights[{key!r}] = {value!r}: expected a finite number >= 0")
    missing = [b for b in CANONICAL_BEHAVIORS if b not in weights]
    if missing:
        raise DataError(f"behavior_weights: missing weight for {', '.join(missing)}")
    return {b: float(weights[b]) for b in CANONICAL_BEHAVIORS}


def _validate_counts(config: SynthConfig) -> None:
    """Counts and scales must be positive and mutually consistent."""
    checks = {
        "n_users": config.n_users >= 1, "weeks": config.weeks >= 1,
        "n_categories": 1 <= config.n_categories <= len(CATEGORIES),
        "n_items": config.n_items >= config.n_categories,
        "target_events": config.target_events >= 2 * config.n_users,
        "tau_seconds": config.tau_seconds > 0, "pref_concentration": config.pref_concentration > 0,
        "activity_sigma": config.activity_sigma >= 0, "rating_noise": config.rating_noise >= 0,
        "rating_user_sd": config.rating_user_sd >= 0,
        "max_sessions_factor": config.max_sessions_factor >= 1,
        "min_session_gap_seconds": config.min_session_gap_seconds
        > 8 * config.step_gap_max_seconds,
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
    names = ("p_click", "p_favorite", "p_cart", "p_purchase", "p_rate", "p_review", "p_share",
             "p_loose", "sim_brand", "sim_category")
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise DataError(f"SynthConfig.{name} = {value!r}: expected a value in [0, 1]")


def _start_epoch(start: str) -> int:
    """Seconds since the Unix epoch of ``start`` (YYYY-MM-DD) at 00:00 UTC."""
    day = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp())


# --- catalogue -----------------------------------------------------------------------


def _article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1].lower() in "aeiou8" else "a"


def _make_item(spec: Category, rng: np.random.Generator) -> dict[str, str]:
    """Draw one item's words from a category's lists and render title + description."""
    pick = {k: str(rng.choice(getattr(spec, k + "s"))) for k in ("model", "attr", "detail",
                                                                  "extra")}
    brand = str(rng.choice(spec.brands))
    ptype = str(rng.choice(spec.types))
    name = spec.name_tpl.format(brand=brand, model=pick["model"], num=int(rng.integers(1, 10)))
    title = spec.title_tpl.format(name=name, brand=brand, attr=pick["attr"], ptype=ptype,
                                  extra=pick["extra"])
    first, second = rng.choice(len(spec.benefits), size=2, replace=False)
    described = f"{pick['attr']} {spec.unit}{ptype}" if not spec.unit \
        else f"{spec.unit}{pick['attr']} {ptype}"
    description = " ".join(s for s in (
        f"{name} is {_article(described)} {described} {pick['detail']}.",
        spec.benefits[first], spec.benefits[second], spec.tail.format(brand=brand)) if s)
    return {ITEM_TITLE: title, ITEM_DESCRIPTION: description, ITEM_BRAND: brand,
            "ptype": ptype, "attr": pick["attr"]}


def _price(spec: Category, rng: np.random.Generator) -> float:
    """A shop-like price, log-uniform in the category range, ending in .99/.49/.95/.00."""
    low, high = spec.price
    whole = math.floor(math.exp(rng.uniform(math.log(low), math.log(high))))
    return round(whole + float(rng.choice([0.99, 0.49, 0.95, 0.0])), 2)


def _make_catalogue(config: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    """Items spread evenly over the first n_categories categories, shuffled, unique titles."""
    specs = CATEGORIES[: config.n_categories]
    cats = np.resize(np.arange(config.n_categories), config.n_items)
    cats = cats[rng.permutation(config.n_items)]
    rows, seen = [], set()
    for c in cats:
        for _ in range(50):  # redraw on a duplicate title
            row = _make_item(specs[c], rng)
            if row[ITEM_TITLE] not in seen:
                break
        seen.add(row[ITEM_TITLE])
        rows.append({**row, ITEM_CATEGORY: specs[c].name, ITEM_PRICE: _price(specs[c], rng)})
    width = max(4, len(str(config.n_items)))
    frame = pd.DataFrame(rows)
    frame.insert(0, ITEM_ID, [f"I{k + 1:0{width}d}" for k in range(config.n_items)])
    brand_codes = pd.factorize(frame[ITEM_CATEGORY] + "/" + frame[ITEM_BRAND])[0]
    return _Catalogue(frame[list(ITEM_FIELDS)], cats.astype(np.int64),
                      np.asarray(brand_codes, dtype=np.int64),
                      frame["ptype"].tolist(), frame["attr"].tolist())


def similarity_matrix(category: np.ndarray, brand: np.ndarray,
                      sim_brand: float, sim_category: float) -> np.ndarray:
    """sim(j, i): 1 on the diagonal, sim_brand same brand+category, sim_category same category.

    ``category`` and ``brand`` are [N] integer codes (brand codes unique per category);
    returns [N, N] float64.
    """
    same_cat = category[:, None] == category[None, :]
    same_brand = same_cat & (brand[:, None] == brand[None, :])
    sim = np.where(same_brand, sim_brand, np.where(same_cat, sim_category, 0.0))
    np.fill_diagonal(sim, 1.0)
    return sim


# --- users and sessions ---------------------------------------------------------------


def expected_session_events(config: SynthConfig) -> float:
    """Expected number of event rows per session under the funnel probabilities."""
    def reached(p_prereq: float) -> float:  # the prerequisite happened, or it was waived
        return p_prereq + (1.0 - p_prereq) * config.p_loose

    click = config.p_click
    cart = reached(click) * config.p_cart
    purchase = reached(cart) * config.p_purchase
    return (1.0 + click + reached(click) * (config.p_favorite + config.p_share) + cart
            + purchase + reached(purchase) * (config.p_rate + config.p_review))


def _session_counts(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Sessions per user [U]: Poisson around a lognormal activity, in [2, cap]."""
    window = config.weeks * 7 * _DAY
    mean = config.target_events / expected_session_events(config) / config.n_users
    room = 0.5 * (window - 8 * config.step_gap_max_seconds) / config.min_session_gap_seconds
    cap = max(2, int(min(room, config.max_sessions_factor * mean)))
    activity = rng.lognormal(0.0, config.activity_sigma, config.n_users)
    counts = rng.poisson(mean * activity / activity.mean())
    return np.clip(counts, 2, cap).astype(np.int64)


def _session_starts(config: SynthConfig, counts: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Session start seconds since ``start`` [U, K], padded with -1; gaps >= min gap."""
    window = config.weeks * 7 * _DAY
    span = 8 * config.step_gap_max_seconds  # longest possible session
    starts = np.full((config.n_users, int(counts.max())), -1, dtype=np.int64)
    for u, n in enumerate(counts):
        raw = rng.exponential(size=n + 1)
        spare = window - n * config.min_session_gap_seconds - span
        gaps = config.min_session_gap_seconds + raw[:n] / raw.sum() * spare
        starts[u, :n] = np.floor(np.cumsum(gaps)).astype(np.int64)
    return starts


# --- simulation -------------------------------------------------------------------------


def _funnel(config: SynthConfig, rng: np.random.Generator,
            n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which steps happen [n, 8] bool, and each step's offset from the session start [n, 8]."""
    u = rng.random((n, 7))
    # p_loose: a step may also happen without its prerequisite (a purchase without a cart,
    # a rating without a purchase), so that no behavior implies another one.
    loose = rng.random((n, 7)) < config.p_loose if config.p_loose > 0 else np.zeros((n, 7), dtype=bool)
    flags = np.zeros((n, len(FUNNEL_ORDER)), dtype=bool)
    flags[:, _STEP[VIEW]] = True
    flags[:, _STEP[CLICK]] = click = u[:, 0] < config.p_click
    flags[:, _STEP[FAVORITE]] = (click | loose[:, 1]) & (u[:, 1] < config.p_favorite)
    flags[:, _STEP[CART]] = cart = (click | loose[:, 2]) & (u[:, 2] < config.p_cart)
    flags[:, _STEP[PURCHASE]] = bought = (cart | loose[:, 3]) & (u[:, 3] < config.p_purchase)
    flags[:, _STEP[RATE]] = (bought | loose[:, 4]) & (u[:, 4] < config.p_rate)
    flags[:, _STEP[REVIEW]] = (bought | loose[:, 5]) & (u[:, 5] < config.p_review)
    flags[:, _STEP[SHARE]] = (click | loose[:, 6]) & (u[:, 6] < config.p_share)
    gaps = np.rint(5.0 + rng.exponential(config.step_gap_mean_seconds, (n, len(FUNNEL_ORDER))))
    gaps = np.minimum(gaps, config.step_gap_max_seconds).astype(np.int64)
    gaps[:, 0] = 0
    return flags, np.cumsum(np.where(flags, gaps, 0), axis=1)


def _ratings(config: SynthConfig, rng: np.random.Generator, prefs: np.ndarray, taste: _RatingTaste,
             users: np.ndarray, items: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Integer ratings 1..5 [n]: the item's quality, the user's leniency and (with
    ``rating_pref_gain``) the user's preference for the item's category."""
    affinity = prefs[users, cats] / prefs[users].max(axis=1)
    mean = (config.rating_base + config.rating_pref_gain * affinity
            + config.rating_quality_gain * taste.quality[items] + taste.leniency[users])
    noisy = mean + config.rating_noise * rng.standard_normal(len(users))
    return np.clip(np.rint(noisy), 1, 5)


def _simulate(config: SynthConfig, rng: np.random.Generator, catalogue: _Catalogue,
              prefs: np.ndarray, popularity: np.ndarray, taste: _RatingTaste,
              starts: np.ndarray) -> dict[str, np.ndarray]:
    """Run all sessions, vectorized over users; return flat event arrays (unsorted).

    ``state[u, i]`` holds sum_e w_b(e) * exp(-(t_ref - t_e)/tau) over u's events on
    item i, with t_ref = u's latest session start; scores are ``base + state @ sim``.
    """
    weights = np.array([config.behavior_weights[b] for b in FUNNEL_ORDER])
    sim = similarity_matrix(catalogue.category, catalogue.brand,
                            config.sim_brand, config.sim_category)            # [N, N]
    base = config.beta_pref * prefs[:, catalogue.category] + config.beta_pop * popularity
    state = np.zeros_like(base)                                              # [U, N]
    ref = starts[:, 0].astype(np.float64)
    parts: list[dict[str, np.ndarray]] = []
    for k in range(starts.shape[1]):
        act = np.flatnonzero(starts[:, k] >= 0)
        now = starts[act, k]
        state[act] *= np.exp(-(now - ref[act]) / config.tau_seconds)[:, None]
        score = base[act] + state[act] @ sim                                 # [A, N]
        target = np.argmax(score + rng.gumbel(size=score.shape), axis=1)
        flags, offsets = _funnel(config, rng, len(act))
        decay = np.exp(offsets / config.tau_seconds)
        state[act, target] += (flags * weights * decay).sum(axis=1)
        ref[act] = now
        rating = _ratings(config, rng, prefs, taste, act, target, catalogue.category[target])
        template = rng.integers(0, 1 << 30, size=len(act))
        parts.append(_session_rows(act, target, now, flags, offsets, rating, template))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _session_rows(users: np.ndarray, items: np.ndarray, now: np.ndarray, flags: np.ndarray,
                  offsets: np.ndarray, rating: np.ndarray,
                  template: np.ndarray) -> dict[str, np.ndarray]:
    """Flatten one round of sessions [A, 8] into event arrays, in funnel order."""
    row, step = np.nonzero(flags)
    rated = (step == _STEP[RATE]) | (step == _STEP[REVIEW])
    return {
        "user": users[row], "item": items[row], "time": now[row] + offsets[row, step],
        "step": step, "rating": np.where(rated, rating[row], np.nan),
        "template": np.where(step == _STEP[REVIEW], template[row], -1),
    }


# --- assembling the sample ------------------------------------------------------------


def _review_text(catalogue: _Catalogue, item: int, rating: float, key: int) -> str:
    """A short English review of ``item`` whose tone follows the rating."""
    tone = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
    templates = REVIEW_TEMPLATES[tone]
    brand = str(catalogue.frame[ITEM_BRAND].iat[item])
    return templates[key % len(templates)].format(
        ptype=catalogue.ptype[item], brand=brand, attr=catalogue.attr[item])


def _events_frame(config: SynthConfig, flat: dict[str, np.ndarray],
                  catalogue: _Catalogue) -> pd.DataFrame:
    """Sort by (timestamp, user, sequence) and render the events in the data contract."""
    seq = np.arange(len(flat["time"]))
    order = np.lexsort((seq, flat["user"], flat["time"]))
    f = {key: values[order] for key, values in flat.items()}
    width = max(4, len(str(config.n_users)))
    texts = [None if key < 0 else _review_text(catalogue, int(item), float(value), int(key))
             for item, value, key in zip(f["item"], f["rating"], f["template"])]
    item_ids = catalogue.frame[ITEM_ID].to_numpy()
    seconds = f["time"] + _start_epoch(config.start)
    return pd.DataFrame({
        USER_ID: [f"U{u + 1:0{width}d}" for u in f["user"]],
        ITEM_ID: item_ids[f["item"]],
        TIMESTAMP: pd.to_datetime(seconds, unit="s", utc=True),
        BEHAVIOR: np.asarray(FUNNEL_ORDER, dtype=object)[f["step"]],
        VALUE: f["rating"].astype(np.float64),
        TEXT: texts,
    })


def _truth(config: SynthConfig, events: pd.DataFrame, items: pd.DataFrame,
           prefs: np.ndarray, popularity: np.ndarray, taste: _RatingTaste,
           n_sessions: int) -> dict[str, object]:
    """The planted truth: weights, every generating parameter, counts and latent draws."""
    params = asdict(config)
    weights = params.pop("behavior_weights")
    counts = events[BEHAVIOR].value_counts()
    user_ids = sorted(events[USER_ID].unique())
    return {
        "generator": "core.data.synth", "generator_version": GENERATOR_VERSION,
        "behavior_weights": weights,
        "score": ("score(j) = beta_pref*pref[u,cat(j)] + beta_pop*popularity[j] + sum over all "
                  "earlier events e of u: behavior_weights[behavior(e)] * "
                  "exp(-(t_now - t_e)/tau_seconds) * sim(j, item(e)), t_e < t_now = the session "
                  "start; the session's target item ~ softmax(score) over all items"),
        "funnel": ("per session: view always; click | view with p_click; favorite, cart and "
                   "share | click with p_favorite, p_cart, p_share; purchase | cart with "
                   "p_purchase; rate and review | purchase with p_rate, p_review; each step "
                   "after the click may also happen without its prerequisite, with probability "
                   "p_loose times its own"),
        "rating": ("clip(round(rating_base + rating_pref_gain * pref[u,c] / max(pref[u]) + "
                   "rating_quality_gain * item_quality[j] + user_leniency[u] + rating_noise * N(0,1)), "
                   "1, 5); rate and review events of a session share it; item_quality and "
                   "user_leniency never enter the choice score"),
        "similarity": {"same_item": 1.0, "same_brand_and_category": config.sim_brand,
                       "same_category": config.sim_category, "other": 0.0},
        "parameters": params,
        "categories": [spec.name for spec in CATEGORIES[: config.n_categories]],
        "counts": {"users": len(user_ids), "items": len(items), "events": len(events),
                   "sessions": n_sessions,
                   "by_behavior": {b: int(counts.get(b, 0)) for b in CANONICAL_BEHAVIORS}},
        "latent": {
            "user_category_preference": {
                f"U{u + 1:0{max(4, len(str(config.n_users)))}d}": prefs[u].tolist()
                for u in range(config.n_users)},
            "item_popularity": dict(zip(items[ITEM_ID].tolist(), popularity.tolist())),
            "item_quality": dict(zip(items[ITEM_ID].tolist(), taste.quality.tolist())),
            "user_leniency": {
                f"U{u + 1:0{max(4, len(str(config.n_users)))}d}": float(taste.leniency[u])
                for u in range(config.n_users)},
        },
    }


def generate(config: SynthConfig | None = None) -> SyntheticData:
    """Generate catalogue, users and events with the planted behavior influence.

    Deterministic by ``config.seed``. Latent draws (preferences [U, C], popularity [N])
    are rounded to 6 decimals before use, so the truth file reproduces them exactly.
    """
    config = config or SynthConfig()
    rng = np.random.default_rng(config.seed)
    catalogue = _make_catalogue(config, rng)
    alpha = np.full(config.n_categories, config.pref_concentration)
    prefs = np.round(rng.dirichlet(alpha, size=config.n_users), 6)           # [U, C]
    popularity = np.round(rng.standard_normal(config.n_items), 6)           # [N]
    starts = _session_starts(config, _session_counts(config, rng), rng)     # [U, K]
    taste = _RatingTaste.draw(config)
    flat = _simulate(config, rng, catalogue, prefs, popularity, taste, starts)
    events = _events_frame(config, flat, catalogue)
    truth = _truth(config, events, catalogue.frame, prefs, popularity, taste,
                   int((starts >= 0).sum()))
    return SyntheticData(events=events, items=catalogue.frame, truth=truth)


# --- writing ----------------------------------------------------------------------------


def _format_value(value: float) -> str:
    """Empty for missing, an integer when integral, else 6 significant digits."""
    if math.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """CSV with minimal quoting and '\\n' line endings."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def events_csv(events: pd.DataFrame) -> str:
    """The events file text: ISO 8601 UTC timestamps, empty value/text where none."""
    stamps = events[TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    texts = events[TEXT].fillna("").astype(str)
    rows = [[u, i, t, b, _format_value(v), x] for u, i, t, b, v, x in zip(
        events[USER_ID], events[ITEM_ID], stamps, events[BEHAVIOR], events[VALUE], texts)]
    return _csv_text(EVENT_COLUMNS, rows)


def items_csv(items: pd.DataFrame) -> str:
    """The items file text; prices with two decimals."""
    rows = [[str(r[c]) for c in ITEM_FIELDS[:-1]] + [f"{r[ITEM_PRICE]:.2f}"]
            for r in items.to_dict("records")]
    return _csv_text(ITEM_FIELDS, rows)


_NUMBER_LIST = re.compile(r"\[\n\s+(-?[0-9.e+-]+(?:,\n\s+-?[0-9.e+-]+)*)\n\s*\]")


def truth_json(truth: Mapping[str, object]) -> str:
    """The ground-truth text: indented JSON with each list of numbers on one line."""
    text = json.dumps(truth, indent=2, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write UTF-8 text to a temp file in the same folder, then os.replace it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(data: SyntheticData, out_dir: Path) -> list[Path]:
    """Write events.csv, items.csv and ground_truth.json atomically; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        EVENTS_FILE: events_csv(data.events),
        ITEMS_FILE: items_csv(data.items),
        TRUTH_FILE: truth_json(data.truth),
    }
    paths = []
    for name, text in texts.items():
        _atomic_write(out_dir / name, text)
        paths.append(out_dir / name)
    return paths


# --- command line -----------------------------------------------------------------------


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


def _parser() -> argparse.ArgumentParser:
    """The argparse definition of ``python -m core.data.synth``."""
    parser = argparse.ArgumentParser(
        prog="python -m core.data.synth",
        description="Generate the sample dataset with a planted behavior-influence truth.")
    defaults = SynthConfig()
    parser.add_argument("--out", type=Path, default=Path("sample_data"), help="output folder")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--users", type=int, default=defaults.n_users)
    parser.add_argument("--items", type=int, default=defaults.n_items)
    parser.add_argument("--events", type=int, default=defaults.target_events,
                        help="target number of events (approximate)")
    parser.add_argument("--weeks", type=int, default=defaults.weeks)
    parser.add_argument("--weights", default="",
                        help="overrides, e.g. view=0.3,click=0.6,purchase=2.0")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Generate and write the sample; exit status 0, or 2 on bad options."""
    args = _parser().parse_args(argv)
    try:
        config = SynthConfig(seed=args.seed, n_users=args.users, n_items=args.items,
                             target_events=args.events, weeks=args.weeks,
                             behavior_weights=parse_weights(args.weights))
        data = generate(config)
        paths = write(data, args.out)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = data.truth["counts"]
    print(f"wrote {', '.join(str(p) for p in paths)}: {counts}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
