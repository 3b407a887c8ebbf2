"""The simulation of users' sessions under the planted score. It draws how many sessions
each user has and when they start, runs them round by round vectorized over users (each
session's target item ~ softmax of the score, whose history term is a decaying running
state per user), draws each session's funnel steps and step gaps, the ratings of rate and
review events (item quality and user leniency, latent draws that never enter the score), and
renders the events, with their English review texts, in the data contract."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.data.synth.catalogue import _Catalogue, similarity_matrix
from core.data.synth.config import (
    _DAY,
    _STEP,
    FUNNEL_ORDER,
    ITEM_BRAND,
    SynthConfig,
    _start_epoch,
)
from core.data.synth.words import REVIEW_TEMPLATES
from core.schema import (
    BEHAVIOR,
    CART,
    CLICK,
    FAVORITE,
    ITEM_ID,
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


@dataclass(frozen=True)
class _RatingTaste:
    """Latent draws behind ratings only (they never enter the choice score)."""

    quality: np.ndarray  # [N] item quality, standard normal
    leniency: np.ndarray  # [U] user rating bias, N(0, rating_user_sd)

    @classmethod
    def draw(cls, config: SynthConfig) -> _RatingTaste:
        # A separate stream, so rating settings leave every choice and time unchanged.
        rng = np.random.default_rng([config.seed, 1])
        quality = np.round(rng.standard_normal(config.n_items), 6)
        return cls(quality, np.round(config.rating_user_sd * rng.standard_normal(config.n_users), 6))


# --- users and sessions ---------------------------------------------------------------


def expected_session_events(config: SynthConfig) -> float:
    """Expected number of event rows per session under the funnel probabilities."""

    def reached(p_prereq: float) -> float:  # the prerequisite happened, or it was waived
        return p_prereq + (1.0 - p_prereq) * config.p_loose

    click = config.p_click
    cart = reached(click) * config.p_cart
    purchase = reached(cart) * config.p_purchase
    return (
        1.0
        + click
        + reached(click) * (config.p_favorite + config.p_share)
        + cart
        + purchase
        + reached(purchase) * (config.p_rate + config.p_review)
    )


def _session_counts(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Sessions per user [U]: Poisson around a lognormal activity, in [2, cap]."""
    window = config.weeks * 7 * _DAY
    mean = config.target_events / expected_session_events(config) / config.n_users
    room = 0.5 * (window - 8 * config.step_gap_max_seconds) / config.min_session_gap_seconds
    cap = max(2, int(min(room, config.max_sessions_factor * mean)))
    activity = rng.lognormal(0.0, config.activity_sigma, config.n_users)
    counts = rng.poisson(mean * activity / activity.mean())
    return np.clip(counts, 2, cap).astype(np.int64)


def _session_starts(config: SynthConfig, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def _funnel(config: SynthConfig, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
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


def _ratings(
    config: SynthConfig,
    rng: np.random.Generator,
    prefs: np.ndarray,
    taste: _RatingTaste,
    users: np.ndarray,
    items: np.ndarray,
    cats: np.ndarray,
) -> np.ndarray:
    """Integer ratings 1..5 [n]: the item's quality, the user's leniency and (with
    ``rating_pref_gain``) the user's preference for the item's category."""
    affinity = prefs[users, cats] / prefs[users].max(axis=1)
    mean = (
        config.rating_base
        + config.rating_pref_gain * affinity
        + config.rating_quality_gain * taste.quality[items]
        + taste.leniency[users]
    )
    noisy = mean + config.rating_noise * rng.standard_normal(len(users))
    return np.clip(np.rint(noisy), 1, 5)


def _simulate(
    config: SynthConfig,
    rng: np.random.Generator,
    catalogue: _Catalogue,
    prefs: np.ndarray,
    popularity: np.ndarray,
    taste: _RatingTaste,
    starts: np.ndarray,
) -> dict[str, np.ndarray]:
    """Run all sessions, vectorized over users; return flat event arrays (unsorted).

    ``state[u, i]`` holds sum_e w_b(e) * exp(-(t_ref - t_e)/tau) over u's events on
    item i, with t_ref = u's latest session start; scores are ``base + state @ sim``.
    """
    weights = np.array([config.behavior_weights[b] for b in FUNNEL_ORDER])
    sim = similarity_matrix(catalogue.category, catalogue.brand, config.sim_brand, config.sim_category)  # [N, N]
    base = config.beta_pref * prefs[:, catalogue.category] + config.beta_pop * popularity
    state = np.zeros_like(base)  # [U, N]
    ref = starts[:, 0].astype(np.float64)
    parts: list[dict[str, np.ndarray]] = []
    for k in range(starts.shape[1]):
        act = np.flatnonzero(starts[:, k] >= 0)
        now = starts[act, k]
        state[act] *= np.exp(-(now - ref[act]) / config.tau_seconds)[:, None]
        score = base[act] + state[act] @ sim  # [A, N]
        target = np.argmax(score + rng.gumbel(size=score.shape), axis=1)
        flags, offsets = _funnel(config, rng, len(act))
        decay = np.exp(offsets / config.tau_seconds)
        state[act, target] += (flags * weights * decay).sum(axis=1)
        ref[act] = now
        rating = _ratings(config, rng, prefs, taste, act, target, catalogue.category[target])
        template = rng.integers(0, 1 << 30, size=len(act))
        parts.append(_session_rows(act, target, now, flags, offsets, rating, template))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _session_rows(
    users: np.ndarray,
    items: np.ndarray,
    now: np.ndarray,
    flags: np.ndarray,
    offsets: np.ndarray,
    rating: np.ndarray,
    template: np.ndarray,
) -> dict[str, np.ndarray]:
    """Flatten one round of sessions [A, 8] into event arrays, in funnel order."""
    row, step = np.nonzero(flags)
    rated = (step == _STEP[RATE]) | (step == _STEP[REVIEW])
    return {
        "user": users[row],
        "item": items[row],
        "time": now[row] + offsets[row, step],
        "step": step,
        "rating": np.where(rated, rating[row], np.nan),
        "template": np.where(step == _STEP[REVIEW], template[row], -1),
    }


# --- the events in the data contract ----------------------------------------------------


def _review_text(catalogue: _Catalogue, item: int, rating: float, key: int) -> str:
    """A short English review of ``item`` whose tone follows the rating."""
    tone = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
    templates = REVIEW_TEMPLATES[tone]
    brand = str(catalogue.frame[ITEM_BRAND].iat[item])
    return templates[key % len(templates)].format(ptype=catalogue.ptype[item], brand=brand, attr=catalogue.attr[item])


def _events_frame(config: SynthConfig, flat: dict[str, np.ndarray], catalogue: _Catalogue) -> pd.DataFrame:
    """Sort by (timestamp, user, sequence) and render the events in the data contract."""
    seq = np.arange(len(flat["time"]))
    order = np.lexsort((seq, flat["user"], flat["time"]))
    f = {key: values[order] for key, values in flat.items()}
    width = max(4, len(str(config.n_users)))
    texts = [
        None if key < 0 else _review_text(catalogue, int(item), float(value), int(key))
        for item, value, key in zip(f["item"], f["rating"], f["template"])
    ]
    item_ids = catalogue.frame[ITEM_ID].to_numpy()
    seconds = f["time"] + _start_epoch(config.start)
    return pd.DataFrame(
        {
            USER_ID: [f"U{u + 1:0{width}d}" for u in f["user"]],
            ITEM_ID: item_ids[f["item"]],
            TIMESTAMP: pd.to_datetime(seconds, unit="s", utc=True),
            BEHAVIOR: np.asarray(FUNNEL_ORDER, dtype=object)[f["step"]],
            VALUE: f["rating"].astype(np.float64),
            TEXT: texts,
        }
    )
