"""Overview tables of one stored dataset, aggregated by DuckDB inside the workspace.

Every function runs one aggregate query and returns a small DataFrame: the
events themselves never leave the database. The Data page draws these tables
with :mod:`core.views.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core import schema as S
from core.store.workspace import Workspace

EVENTS = "events"  # column of event counts
USERS = "users"  # column of distinct-user counts
ITEMS = "items"  # column of distinct-item counts
DAY = "day"
FROM_BEHAVIOR = "from_behavior"
TO_BEHAVIOR = "to_behavior"
TRANSITIONS = "transitions"
TOP_ITEMS = 20
MAX_BEHAVIORS = 15  # behaviors drawn at most (a mis-mapped column can have thousands)
OTHER = "(other behaviors)"


@dataclass(frozen=True)
class Overview:
    """All overview tables of one dataset (what the Data page caches)."""

    funnel: pd.DataFrame  # [behavior, events, users], canonical order
    daily: pd.DataFrame  # [day, behavior, events]
    per_user: pd.DataFrame  # [events, users]: how many users have that many events
    per_item: pd.DataFrame  # [events, items]: how many items have that many events
    top_items: pd.DataFrame  # [item_id, title, events, users], most events first
    transitions: pd.DataFrame  # [from_behavior, to_behavior, transitions]


def behavior_order(behaviors: list[str] | pd.Series, counts: list[int] | pd.Series | None = None) -> list[str]:
    """Canonical behaviors first (in their funnel order), then custom ones by count, then name."""
    labels = [str(b) for b in behaviors]
    weight = dict(zip(labels, counts if counts is not None else [0] * len(labels)))
    canonical = [b for b in S.CANONICAL_BEHAVIORS if b in weight]
    custom = sorted((b for b in weight if b not in S.CANONICAL_BEHAVIORS), key=lambda b: (-int(weight[b]), b))
    return canonical + custom


def funnel_counts(workspace: Workspace, dataset: str) -> pd.DataFrame:
    """Events and distinct users per behavior, in canonical order: ``[behavior, events, users]``."""
    frame = workspace.query(
        f"SELECT {S.BEHAVIOR}, count(*) AS {EVENTS}, count(DISTINCT {S.USER_ID}) AS {USERS} "
        f"FROM events WHERE {S.DATASET} = ? GROUP BY {S.BEHAVIOR}",
        [dataset],
    )
    order = behavior_order(frame[S.BEHAVIOR], frame[EVENTS])
    frame = frame.set_index(S.BEHAVIOR).loc[order].reset_index()
    return _ints(frame, (EVENTS, USERS))


def daily_counts(workspace: Workspace, dataset: str) -> pd.DataFrame:
    """Events per UTC day and behavior: ``[day, behavior, events]`` sorted by day."""
    frame = workspace.query(
        f"SELECT CAST(date_trunc('day', {S.TIMESTAMP}) AS DATE) AS {DAY}, {S.BEHAVIOR}, "
        f"count(*) AS {EVENTS} FROM events WHERE {S.DATASET} = ? "
        f"GROUP BY {DAY}, {S.BEHAVIOR} ORDER BY {DAY}, {S.BEHAVIOR}",
        [dataset],
    )
    frame[DAY] = pd.to_datetime(frame[DAY])
    return _ints(frame, (EVENTS,))


def events_per_user(workspace: Workspace, dataset: str) -> pd.DataFrame:
    """Distribution of events per user: ``[events, users]`` (users having that many events)."""
    return _distribution(workspace, dataset, S.USER_ID, USERS)


def events_per_item(workspace: Workspace, dataset: str) -> pd.DataFrame:
    """Distribution of events per item: ``[events, items]`` (items having that many events)."""
    return _distribution(workspace, dataset, S.ITEM_ID, ITEMS)


def _distribution(workspace: Workspace, dataset: str, key: str, label: str) -> pd.DataFrame:
    frame = workspace.query(
        f"SELECT n AS {EVENTS}, count(*) AS {label} FROM ("
        f"SELECT count(*) AS n FROM events WHERE {S.DATASET} = ? GROUP BY {key}"
        f") GROUP BY n ORDER BY n",
        [dataset],
    )
    return _ints(frame, (EVENTS, label))


def top_items(workspace: Workspace, dataset: str, k: int = TOP_ITEMS) -> pd.DataFrame:
    """The ``k`` items with most events: ``[item_id, title, events, users]``.

    The title falls back to the item ID when the catalogue has none; ties are
    broken by item ID so the order is stable.
    """
    frame = workspace.query(
        f"WITH e AS (SELECT {S.ITEM_ID}, count(*) AS {EVENTS}, count(DISTINCT {S.USER_ID}) AS {USERS} "
        f"FROM events WHERE {S.DATASET} = ? GROUP BY {S.ITEM_ID} "
        f"ORDER BY {EVENTS} DESC, {S.ITEM_ID} LIMIT ?), "
        f"t AS (SELECT {S.ITEM_ID}, any_value({S.ITEM_TITLE}) AS {S.ITEM_TITLE} FROM items "
        f"WHERE {S.DATASET} = ? GROUP BY {S.ITEM_ID}) "
        f"SELECT e.{S.ITEM_ID}, coalesce(nullif(trim(t.{S.ITEM_TITLE}), ''), e.{S.ITEM_ID}) AS {S.ITEM_TITLE}, "
        f"e.{EVENTS}, e.{USERS} FROM e LEFT JOIN t ON t.{S.ITEM_ID} = e.{S.ITEM_ID} "
        f"ORDER BY e.{EVENTS} DESC, e.{S.ITEM_ID}",
        [dataset, int(k), dataset],
    )
    return _ints(frame, (EVENTS, USERS))


def behavior_transitions(workspace: Workspace, dataset: str) -> pd.DataFrame:
    """Which behavior follows which within each user's time-ordered sequence.

    Events are ordered by ``(timestamp, row)`` per user; each consecutive pair
    counts once. Returns ``[from_behavior, to_behavior, transitions]``.
    """
    frame = workspace.query(
        f"SELECT {S.BEHAVIOR} AS {FROM_BEHAVIOR}, nxt AS {TO_BEHAVIOR}, count(*) AS {TRANSITIONS} FROM ("
        f"SELECT {S.BEHAVIOR}, lead({S.BEHAVIOR}) OVER (PARTITION BY {S.USER_ID} "
        f"ORDER BY {S.TIMESTAMP}, {S.ROW}) AS nxt FROM events WHERE {S.DATASET} = ?"
        f") WHERE nxt IS NOT NULL GROUP BY {FROM_BEHAVIOR}, {TO_BEHAVIOR} "
        f"ORDER BY {FROM_BEHAVIOR}, {TO_BEHAVIOR}",
        [dataset],
    )
    return _ints(frame, (TRANSITIONS,))


def first_behaviors(order: list[str], limit: int = MAX_BEHAVIORS) -> list[str]:
    """The behaviors drawn one by one: all of ``order`` up to ``limit``, else its first ``limit - 1``."""
    return list(order) if len(order) <= limit else list(order[: limit - 1])


def transition_matrix(
    transitions: pd.DataFrame, order: list[str] | None = None, limit: int = MAX_BEHAVIORS
) -> pd.DataFrame:
    """Square count matrix (rows: earlier behavior, columns: next behavior) from the long table.

    Behaviors follow ``order`` (default: canonical, then by name); past the first
    ``limit - 1`` of them, the rest are summed into one :data:`OTHER` row and
    column, so a mis-mapped behavior column cannot blow the matrix up.
    """
    seen = pd.concat([transitions[FROM_BEHAVIOR], transitions[TO_BEHAVIOR]]).astype(str)
    labels = list(order) if order is not None else behavior_order(sorted(set(seen)))
    labels += sorted(set(seen) - set(labels))  # never drop a pair whose behavior is not in ``order``
    if len(labels) > limit:
        labels = first_behaviors(labels, limit) + [OTHER]
        kept = set(labels)
        transitions = transitions.assign(
            **{col: transitions[col].where(transitions[col].isin(kept), OTHER) for col in (FROM_BEHAVIOR, TO_BEHAVIOR)}
        )
    if transitions.empty:
        wide = pd.DataFrame(0, index=labels, columns=labels, dtype="int64")
    else:
        wide = transitions.pivot_table(
            index=FROM_BEHAVIOR, columns=TO_BEHAVIOR, values=TRANSITIONS, aggfunc="sum", fill_value=0
        )
        wide = wide.reindex(index=labels, columns=labels, fill_value=0).fillna(0).astype("int64")
    wide.index.name, wide.columns.name = FROM_BEHAVIOR, TO_BEHAVIOR
    return wide


def compute_overview(workspace: Workspace, dataset: str, k: int = TOP_ITEMS) -> Overview:
    """Every overview table of ``dataset`` (NotFoundError when it does not exist)."""
    workspace.dataset(dataset)
    return Overview(
        funnel=funnel_counts(workspace, dataset),
        daily=daily_counts(workspace, dataset),
        per_user=events_per_user(workspace, dataset),
        per_item=events_per_item(workspace, dataset),
        top_items=top_items(workspace, dataset, k),
        transitions=behavior_transitions(workspace, dataset),
    )


def _ints(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    for col in columns:
        frame[col] = frame[col].astype("int64")
    return frame
