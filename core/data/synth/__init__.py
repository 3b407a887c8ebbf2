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

Modules: :mod:`~core.data.synth.config` (SynthConfig, the constants and the output type),
:mod:`~core.data.synth.words` (word lists), :mod:`~core.data.synth.catalogue` (items and
their similarity), :mod:`~core.data.synth.simulate` (sessions, funnel, ratings, review text),
:mod:`~core.data.synth.truth` (``generate`` and the ground truth) and
:mod:`~core.data.synth.files` (the written files). ``behaviorlens synth`` is its command line.
"""

from __future__ import annotations

from core.data.synth.catalogue import similarity_matrix
from core.data.synth.config import (
    DEFAULT_BEHAVIOR_WEIGHTS,
    EVENT_COLUMNS,
    EVENTS_FILE,
    FUNNEL_ORDER,
    GENERATOR_VERSION,
    ITEM_BRAND,
    ITEM_DESCRIPTION,
    ITEM_FIELDS,
    ITEM_PRICE,
    ITEMS_FILE,
    TRUTH_FILE,
    SynthConfig,
    SyntheticData,
    parse_weights,
    validate_weights,
)
from core.data.synth.files import events_csv, items_csv, truth_json, write
from core.data.synth.simulate import expected_session_events
from core.data.synth.truth import generate

__all__ = [
    "DEFAULT_BEHAVIOR_WEIGHTS",
    "EVENT_COLUMNS",
    "EVENTS_FILE",
    "FUNNEL_ORDER",
    "GENERATOR_VERSION",
    "ITEM_BRAND",
    "ITEM_DESCRIPTION",
    "ITEM_FIELDS",
    "ITEM_PRICE",
    "ITEMS_FILE",
    "TRUTH_FILE",
    "SynthConfig",
    "SyntheticData",
    "events_csv",
    "expected_session_events",
    "generate",
    "items_csv",
    "parse_weights",
    "similarity_matrix",
    "truth_json",
    "validate_weights",
    "write",
]
