"""Exact leave-one-out: attribution_i = f(all events) − f(all events but i), one batched pass.

Event i is masked in place (swapped for the mask token), so no other event moves.
Leave-one-out has no completeness property: its attributions need not sum to
f(all) − f(none) when events interact.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from core.explain.explanation import Explanation
from core.explain.scorer import EventScorer
from core.explain.subject import Subject, finish


def leave_one_out(scorer: EventScorer) -> np.ndarray:
    """[n] f(all) − f(all but i), from one pass over n + 1 histories."""
    n = scorer.n_events
    removed = torch.cat([torch.zeros(1, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)])  # [n+1, n]
    scores = scorer.score_removed(removed).detach().double().numpy()
    return scores[0] - scores[1:]


def explain_loo(subject: Subject) -> Explanation:
    """Leave-one-out explanation of ``subject`` (no completeness delta)."""
    start = time.perf_counter()
    values = leave_one_out(subject.scorer)
    return finish(subject, "loo", values, None, (time.perf_counter() - start) * 1000)
