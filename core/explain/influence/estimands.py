"""Per-behavior influence: which behaviors move the rankings, for one user and across users.

Attributions. ``a(u, j, e)`` is the attribution of event e of user u to the engagement
log-probability s_j = log p(j | u's history) of an item j the model recommends to u:
j ∈ R(u), u's top-K by the model's engagement ranking under the run's protocol (never
the held-out truth). Method ``loo`` (leave-one-out, e masked in place) or ``ig``
(Integrated Gradients from the all-masked baseline); see :mod:`core.explain.influence.table`.

Estimands, over a seeded sample U of users, with rows P = {(u, j, e): u ∈ U, j ∈ R(u),
e among the newest ``max_len`` events of u}, P_b its rows whose event has behavior b, and
S_b ⊆ P_b the rows whose event is *settled*: at least ``min_age`` seconds (default one
hour) older than u's newest event, i.e. not part of the ongoing session:

- ``per_behavior_share[b]`` = Σ_{P_b} |a| / Σ_P |a|: the share of the total absolute
  attribution carried by behavior b, every event counted (how much of the ranking b
  drives; it grows with how many such events there are). The shares sum to 1.
- ``per_event[b]`` = Σ_{S_b} |a| / |S_b|: the mean absolute attribution of ONE settled
  event of type b to one recommended item: how much one such event counts, the quantity
  the planted ``behavior_weights`` of :mod:`core.data.synth` describe (they act on later
  sessions). Absolute values, because an event lifts the items related to it and pushes
  the others down through the softmax normalizer: a signed mean mixes the two and can
  mislead even under the generating model. Events of the ongoing session are left out
  because their influence is mostly the session's next step (a view is followed by a
  click on the same item), a different effect that ``by_time_gap`` shows.
- ``per_behavior_signed[b]`` = Σ_{S_b} a / |S_b|: the same mean, signed.
- ``by_time_gap`` / ``by_category``: share (of Σ_P |a|), per_event (mean |a|), signed
  (mean a) and rows, with every row of P grouped by its event's age (time of u's newest
  event − time of e: <1h, 1h-1d, 1-7d, >7d) or by its event item's category.
- ``intervals``: 95% percentile bootstrap intervals of the three per-behavior numbers,
  resampling users (a user's rows together; ``n_boot`` resamples, seeded).

``model_weights`` (not an attribution): the behavior memory's learned weight of one event
of each behavior at a few ages (``MEMORY_AGES``), read from the model itself; see
:func:`memory_weights`.

Method ``swap`` (:mod:`core.explain.influence.swap`) replaces ``per_event`` and
``per_behavior_signed`` with an interventional estimate. Behavior ablation (metric deltas
when one behavior is removed from every history) lives in :mod:`core.explain.influence.ablation`.

Per user (one explanation): :func:`behavior_totals` = Σ of the explanation's event
attributions by behavior type (signed; in the explanation's target units).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.data.sequences import SequenceData
from core.explain.explanation import Explanation
from core.explain.influence.table import AttributionTable

TIME_GAPS: tuple[tuple[str, float], ...] = (
    ("<1h", 3600.0),
    ("1h-1d", 86400.0),
    ("1-7d", 7 * 86400.0),
    (">7d", float("inf")),
)
MIN_AGE = 3600  # seconds; events of the ongoing session (younger) are left out of per_event
N_BOOT = 200
NO_CATEGORY = "(none)"


def behavior_totals(exp: Explanation) -> dict[str, float]:
    """Σ of one explanation's event attributions by behavior type (signed, target units), largest |Σ| first."""
    totals: dict[str, float] = {}
    for e in exp.events:
        totals[e.behavior] = totals.get(e.behavior, 0.0) + float(e.attribution)
    return dict(sorted(totals.items(), key=lambda kv: -abs(kv[1])))


def user_sums(table: AttributionTable, keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, ...]:
    """Per (sampled user, key): Σ|a|, Σa and row counts, each [U', n_keys]; plus the users' order [U']."""
    users, row = np.unique(table.user, return_inverse=True)
    flat = row * n_keys + keys
    size = len(users) * n_keys
    shape = (len(users), n_keys)
    abs_sum = np.bincount(flat, np.abs(table.attribution), size).reshape(shape)
    signed = np.bincount(flat, table.attribution, size).reshape(shape)
    count = np.bincount(flat, None, size).reshape(shape).astype(np.float64)
    return abs_sum, signed, count, users


def ratio_stats(abs_sum: np.ndarray, signed: np.ndarray, count: np.ndarray) -> dict[str, np.ndarray]:
    """[..., U', G] per-user sums -> share, per_event, signed [..., G] (NaN where a group has no rows)."""
    a, s, c = abs_sum.sum(-2), signed.sum(-2), count.sum(-2)
    total = a.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "share": np.where(total > 0, a / total, np.nan),
            "per_event": np.where(c > 0, a / c, np.nan),
            "signed": np.where(c > 0, s / c, np.nan),
        }


def bootstrap(
    abs_sum: np.ndarray, signed: np.ndarray, count: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, np.ndarray]:
    """95% percentile intervals [G, 2] of each statistic, resampling users with replacement."""
    n = abs_sum.shape[0]
    if n == 0:
        return {name: np.full((abs_sum.shape[1], 2), np.nan) for name in ("share", "per_event", "signed")}
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    stats = ratio_stats(weights[:, :, None] * abs_sum, weights[:, :, None] * signed, weights[:, :, None] * count)
    out = {}
    for name, values in stats.items():  # values [n_boot, G]
        ok = np.isfinite(values).any(0)
        bounds = np.full((values.shape[1], 2), np.nan)
        if ok.any():
            bounds[ok] = np.nanpercentile(values[:, ok], [2.5, 97.5], axis=0).T
        out[name] = bounds
    return out


def time_gap_bucket(age_seconds: np.ndarray) -> np.ndarray:
    """Index into TIME_GAPS of each age in seconds [R]."""
    edges = np.array([upper for _, upper in TIME_GAPS[:-1]])
    return np.searchsorted(edges, np.asarray(age_seconds, np.float64), side="right")


def grouped(table: AttributionTable, keys: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    """label -> {share, per_event, signed, rows} over the table's rows grouped by ``keys`` [R]."""
    abs_sum, signed, count, _ = user_sums(table, keys, len(labels))
    stats = ratio_stats(abs_sum, signed, count)
    rows = count.sum(0)
    return {
        label: {
            "share": float(stats["share"][g]),
            "per_event": float(stats["per_event"][g]),
            "signed": float(stats["signed"][g]),
            "rows": int(rows[g]),
        }
        for g, label in enumerate(labels)
        if rows[g] > 0
    }


def event_ages(data: SequenceData, table: AttributionTable) -> np.ndarray:
    """[R] seconds between each row's event and its user's newest event."""
    newest = data.ts[data.offsets[table.user + 1] - 1]
    return (newest - data.ts[table.event]).astype(np.float64)


def category_keys(
    data: SequenceData, table: AttributionTable, categories: Mapping[str, Any] | None
) -> tuple[np.ndarray, list[str]]:
    """[R] category code of each row's event item, and the labels (NO_CATEGORY for unknown)."""
    names = np.array([_category(categories, str(i)) for i in data.item_ids], dtype=object)
    labels, codes = np.unique(names[data.item[table.event]].astype(str), return_inverse=True)
    return codes.astype(np.int64), [str(x) for x in labels]


def _category(categories: Mapping[str, Any] | None, item: str) -> str:
    value = None if categories is None else categories.get(item)
    return NO_CATEGORY if value is None or value != value or str(value) == "" else str(value)


def summarize(
    table: AttributionTable,
    data: SequenceData,
    categories: Mapping[str, Any] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_age: float = 0,
) -> dict[str, Any]:
    """The report's numbers from an attribution table: per behavior (with intervals), time gap, category.

    ``per_behavior_share`` counts every row; ``per_event`` and ``per_behavior_signed`` only rows whose
    event is at least ``min_age`` seconds older than its user's newest event.
    """
    ages = event_ages(data, table)
    out = _per_behavior(table, data, {"share": "per_behavior_share"}, n_boot, seed)
    settled = _per_behavior(
        table.subset(ages >= min_age), data, {"per_event": "per_event", "signed": "per_behavior_signed"}, n_boot, seed
    )
    out["events_settled"] = settled.pop("events")
    for key in ("per_event", "per_behavior_signed"):
        out[key] = settled[key]
    out["intervals"].update(settled["intervals"])
    out["by_time_gap"] = grouped(table, time_gap_bucket(ages), [n for n, _ in TIME_GAPS])
    codes, labels = category_keys(data, table, categories)
    out["by_category"] = grouped(table, codes, labels)
    return out


def _per_behavior(
    table: AttributionTable, data: SequenceData, names: dict[str, str], n_boot: int, seed: int
) -> dict[str, Any]:
    """{names[stat]: {behavior: value}}, their bootstrap ``intervals`` and row counts ``events``.

    Every behavior of the model has a share and a row count (0 when the sample has none of its events:
    it carries none of the attribution); a mean over events exists only for behaviors with events.
    """
    behaviors = list(data.behaviors[1:])
    abs_sum, signed, count, _ = user_sums(table, data.behavior[table.event] - 1, len(behaviors))
    stats, boot = ratio_stats(abs_sum, signed, count), bootstrap(abs_sum, signed, count, n_boot, seed)
    every = list(range(len(behaviors)))
    present = [g for g in every if count[:, g].sum() > 0]
    rows = {s: every if s == "share" else present for s in names}
    out: dict[str, Any] = {names[s]: {behaviors[g]: float(stats[s][g]) for g in rows[s]} for s in names}
    out["intervals"] = {names[s]: {behaviors[g]: [float(x) for x in boot[s][g]] for g in rows[s]} for s in names}
    out["events"] = {behaviors[g]: int(count[:, g].sum()) for g in every}
    return out
