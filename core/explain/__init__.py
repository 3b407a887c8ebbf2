"""Per-event attributions of one (user, item, target): IG, SHAP, leave-one-out and attention.

Every method returns the same :class:`Explanation`. ``explain`` works on a fitted
``Recommender``; :func:`core.runs.explain.explain_run` on a saved run of a
workspace with original user and item IDs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import DataError
from core.explain.attention import explain_attention
from core.explain.explanation import TARGETS, EventAttribution, Explanation
from core.explain.ig import explain_ig
from core.explain.loo import explain_loo
from core.explain.shapley import explain_shap
from core.explain.subject import Labels, Subject, subject_for
from core.model.recommender import Recommender

METHODS: dict[str, Callable[..., Explanation]] = {
    "ig": explain_ig,
    "shap": explain_shap,
    "loo": explain_loo,
    "attention": explain_attention,
}

__all__ = [
    "METHODS",
    "TARGETS",
    "EventAttribution",
    "Explanation",
    "Labels",
    "Subject",
    "explain",
    "explain_subject",
    "subject_for",
]


def explain_subject(subject: Subject, method: str, **options: Any) -> Explanation:
    """Run ``method`` on a prepared subject; ``options`` are that method's settings (e.g. steps, max_evals)."""
    if method not in METHODS:
        raise DataError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    fn = METHODS[method]
    known = set(inspect.signature(fn).parameters) - {"subject"}
    bad = sorted(set(options) - known)
    if bad:
        raise DataError(
            f"option(s) {bad} do not apply to method {method!r}: expected some of {sorted(known) or 'none'}"
        )
    return fn(subject, **options)


def explain(
    rec: Recommender,
    user: str,
    item: str,
    method: str = "ig",
    target: str = "fused",
    *,
    weights: Mapping[str, float] | None = None,
    labels: Labels | None = None,
    **options: Any,
) -> Explanation:
    """Explain why the fitted ``rec`` scores ``item`` (original item ID) for ``user`` (stored user ID)."""
    if method not in METHODS:
        raise DataError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    subject = subject_for(rec, user, item, target, weights=weights, labels=labels)
    return explain_subject(subject, method, **options)
