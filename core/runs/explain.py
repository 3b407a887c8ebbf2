"""Explanations over a saved run: original or stored user IDs, item titles and texts, the run's fusion weights.

Each function takes a :class:`~core.runs.run.Run`. ``user_id`` is the user's original ID
(pseudonymized the way the dataset was) unless ``stored=True``, when it is already the
stored ID (what the pages list); ``label`` is the ID shown in the result (the given ID by
default). The ``fused`` target uses ``weights``, else the run's default preset (engagement
alone when it has none). Results are kept in the run handle's memo: asking twice is free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.explain import explain
from core.explain.counterfactual import MAX_REMOVALS, CounterfactualSet, counterfactual_set
from core.explain.explanation import Explanation
from core.explain.subject import Labels
from core.explain.text_ig import TOLERANCE
from core.explain.tokens import DEFAULT_STEPS, TokenAttribution, token_attributions
from core.runs.fusion import default_weights
from core.runs.run import Run


def _who(run: Run, user_id: str, stored: bool, label: str | None) -> tuple[str, str]:
    return (user_id if stored else run.stored_user(user_id)), (label or user_id)


def _weights(run: Run, target: str, weights: Mapping[str, float] | None) -> dict[str, float] | None:
    if weights is None and target == "fused":
        weights = default_weights(run)[1]
    return None if weights is None else {k: float(v) for k, v in weights.items()}


def _frozen(weights: Mapping[str, float] | None) -> tuple[tuple[str, float], ...] | None:
    return None if weights is None else tuple(sorted(weights.items()))


def explain_run(
    run: Run,
    user_id: str,
    item_id: str,
    method: str = "ig",
    target: str = "fused",
    weights: Mapping[str, float] | None = None,
    *,
    stored: bool = False,
    label: str | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``item_id`` for a user under the run (``options``: the method's settings, e.g. ``steps``)."""
    user, shown = _who(run, user_id, stored, label)
    w = _weights(run, target, weights)
    key = (user, shown, str(item_id), method, target, _frozen(w), tuple(sorted(options.items())))
    return run.memo(
        "explanation",
        key,
        lambda: explain(
            run.recommender(),
            user,
            item_id,
            method,
            target,
            weights=w,
            labels=Labels(run.titles(), shown, run.id),
            **options,
        ),
    )


def counterfactual_run(
    run: Run,
    user_id: str,
    item_id: str,
    k: int = 10,
    max_removals: int = MAX_REMOVALS,
    *,
    stored: bool = False,
    label: str | None = None,
) -> CounterfactualSet:
    """The counterfactual set of ``item_id`` for a user under the run."""
    user, shown = _who(run, user_id, stored, label)
    key = (user, shown, str(item_id), k, max_removals)
    return run.memo(
        "counterfactual",
        key,
        lambda: counterfactual_set(
            run.recommender(), user, item_id, k, max_removals, labels=Labels(run.titles(), shown, run.id)
        ),
    )


def token_attributions_run(
    run: Run,
    user_id: str,
    item_id: str,
    target: str = "fused",
    weights: Mapping[str, float] | None = None,
    *,
    event_positions: list[int] | None = None,
    steps: int = DEFAULT_STEPS,
    tolerance: float | None = TOLERANCE,
    stored: bool = False,
    event_text_positions: list[int] | None = None,
) -> list[TokenAttribution]:
    """Token attributions of the candidate item's text (then of the item text of the events at
    ``event_positions``, then of the own text of the events at ``event_text_positions``)."""
    user, _ = _who(run, user_id, stored, None)
    w = _weights(run, target, weights)
    positions = (tuple(event_positions or ()), tuple(event_text_positions or ()))
    key = (user, str(item_id), target, _frozen(w), positions, steps, tolerance)
    return run.memo(
        "tokens",
        key,
        lambda: token_attributions(
            run.recommender(),
            user,
            item_id,
            target,
            weights=w,
            event_positions=event_positions,
            steps=steps,
            tolerance=tolerance,
            titles=run.titles(),
            event_text_positions=event_text_positions,
        ),
    )
