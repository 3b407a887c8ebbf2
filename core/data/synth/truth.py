"""The generator's entry point and the planted truth it records. :func:`generate` draws the
catalogue, the latent user preferences and item popularity, the session times and the rating
taste, runs the simulation, and returns the events and items with the ground truth: the
behavior weights, the score, funnel and rating formulas in words, every generating parameter,
the counts and every latent draw, so that the influence code can be checked against it."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from core.data.synth.catalogue import _make_catalogue
from core.data.synth.config import GENERATOR_VERSION, SynthConfig, SyntheticData
from core.data.synth.simulate import (
    _events_frame,
    _RatingTaste,
    _session_counts,
    _session_starts,
    _simulate,
)
from core.data.synth.words import CATEGORIES
from core.schema import BEHAVIOR, CANONICAL_BEHAVIORS, ITEM_ID, USER_ID


def _truth(
    config: SynthConfig,
    events: pd.DataFrame,
    items: pd.DataFrame,
    prefs: np.ndarray,
    popularity: np.ndarray,
    taste: _RatingTaste,
    n_sessions: int,
) -> dict[str, object]:
    """The planted truth: weights, every generating parameter, counts and latent draws."""
    params = asdict(config)
    weights = params.pop("behavior_weights")
    counts = events[BEHAVIOR].value_counts()
    user_ids = sorted(events[USER_ID].unique())
    return {
        "generator": "core.data.synth",
        "generator_version": GENERATOR_VERSION,
        "behavior_weights": weights,
        "score": (
            "score(j) = beta_pref*pref[u,cat(j)] + beta_pop*popularity[j] + sum over all "
            "earlier events e of u: behavior_weights[behavior(e)] * "
            "exp(-(t_now - t_e)/tau_seconds) * sim(j, item(e)), t_e < t_now = the session "
            "start; the session's target item ~ softmax(score) over all items"
        ),
        "funnel": (
            "per session: view always; click | view with p_click; favorite, cart and "
            "share | click with p_favorite, p_cart, p_share; purchase | cart with "
            "p_purchase; rate and review | purchase with p_rate, p_review; each step "
            "after the click may also happen without its prerequisite, with probability "
            "p_loose times its own"
        ),
        "rating": (
            "clip(round(rating_base + rating_pref_gain * pref[u,c] / max(pref[u]) + "
            "rating_quality_gain * item_quality[j] + user_leniency[u] + rating_noise * N(0,1)), "
            "1, 5); rate and review events of a session share it; item_quality and "
            "user_leniency never enter the choice score"
        ),
        "similarity": {
            "same_item": 1.0,
            "same_brand_and_category": config.sim_brand,
            "same_category": config.sim_category,
            "other": 0.0,
        },
        "parameters": params,
        "categories": [spec.name for spec in CATEGORIES[: config.n_categories]],
        "counts": {
            "users": len(user_ids),
            "items": len(items),
            "events": len(events),
            "sessions": n_sessions,
            "by_behavior": {b: int(counts.get(b, 0)) for b in CANONICAL_BEHAVIORS},
        },
        "latent": {
            "user_category_preference": {
                f"U{u + 1:0{max(4, len(str(config.n_users)))}d}": prefs[u].tolist() for u in range(config.n_users)
            },
            "item_popularity": dict(zip(items[ITEM_ID].tolist(), popularity.tolist())),
            "item_quality": dict(zip(items[ITEM_ID].tolist(), taste.quality.tolist())),
            "user_leniency": {
                f"U{u + 1:0{max(4, len(str(config.n_users)))}d}": float(taste.leniency[u])
                for u in range(config.n_users)
            },
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
    prefs = np.round(rng.dirichlet(alpha, size=config.n_users), 6)  # [U, C]
    popularity = np.round(rng.standard_normal(config.n_items), 6)  # [N]
    starts = _session_starts(config, _session_counts(config, rng), rng)  # [U, K]
    taste = _RatingTaste.draw(config)
    flat = _simulate(config, rng, catalogue, prefs, popularity, taste, starts)
    events = _events_frame(config, flat, catalogue)
    truth = _truth(config, events, catalogue.frame, prefs, popularity, taste, int((starts >= 0).sum()))
    return SyntheticData(events=events, items=catalogue.frame, truth=truth)
