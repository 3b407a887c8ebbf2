"""SHAP (the ``shap`` library) with events as players; a missing player = the event masked in place.

The value function is v(Z) = f(history with the events outside Z masked). Histories of
at most ``exact_max`` events get exact Shapley values (``shap.ExactExplainer``, all
2^n coalitions); longer ones are sampled with ``shap.PermutationExplainer``
(antithetic permutations, ``max_evals`` value-function calls). Both are efficient:
the values sum to f(all) − f(none) (the completeness delta reports the rounding).
The module is named ``shap_`` so that it does not shadow the ``shap`` package.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from core._checks import check_whole
from core.explain.explanation import Explanation
from core.explain.scorer import EventScorer
from core.explain.subject import Subject, finish

EXACT_MAX = 12  # exact Shapley values up to this many events (2^12 = 4096 evaluations)
DEFAULT_MAX_EVALS = 2000  # value-function calls of the sampled explainer


@dataclass
class ShapResult:
    values: np.ndarray  # [n]
    delta: float  # Σ values − (f(all) − f(none))
    exact: bool
    evals: int  # value-function calls


def shapley_values(
    scorer: EventScorer, exact_max: int = EXACT_MAX, max_evals: int = DEFAULT_MAX_EVALS, seed: int = 0
) -> ShapResult:
    """Shapley values [n] of the events: exact up to ``exact_max`` events, else ``max_evals`` sampled calls."""
    n = scorer.n_events
    exact = n <= exact_max
    if not exact:
        check_whole("SHAP samples", max_evals, 2 * n + 1, hint=f"2n + 1 for {n} events")
    calls = [0]

    def value(z: np.ndarray) -> np.ndarray:  # coalitions [S, n] (1 = present) -> [S]
        calls[0] += len(z)
        return scorer.score_removed(torch.from_numpy(np.asarray(z) < 0.5)).detach().double().numpy()

    import shap  # imported here: it takes about a second, and only this method needs it

    masker = shap.maskers.Independent(np.zeros((1, n)), max_samples=1)  # a missing event -> 0 -> masked
    if exact:
        out = shap.explainers.Exact(value, masker)(np.ones((1, n)), max_evals=2**n + 1, silent=True)
    else:
        out = shap.explainers.Permutation(value, masker, seed=seed)(np.ones((1, n)), max_evals=max_evals, silent=True)
    values = np.asarray(out.values, dtype=np.float64).reshape(-1)
    ends = scorer.score_removed(torch.tensor([[False] * n, [True] * n])).double().numpy()
    return ShapResult(values, float(values.sum() - (ends[0] - ends[1])), exact, calls[0])


def explain_shap(
    subject: Subject, exact_max: int = EXACT_MAX, max_evals: int = DEFAULT_MAX_EVALS, seed: int = 0
) -> Explanation:
    """SHAP explanation of ``subject``; ``details`` says exact or sampled and the calls made."""
    start = time.perf_counter()
    res = shapley_values(subject.scorer, exact_max, max_evals, seed)
    ms = (time.perf_counter() - start) * 1000
    return finish(
        subject,
        "shap",
        res.values,
        res.delta,
        ms,
        details={
            "exact": res.exact,
            "evaluations": res.evals,
            "max_evals": None if res.exact else max_evals,
            "seed": seed,
        },
    )
