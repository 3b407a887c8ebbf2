"""Exact overview tables on a tiny, hand-computable dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import schema as S
from core.errors import NotFoundError
from core.ingest import overview as O
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest
from core.store.workspace import Workspace

# 3 users, 10 events. Per user, in time order (u1 has two events at the same second:
# the file row breaks the tie):
#   u1: view(i1) click(i1) cart(i1) purchase(i1)    t=0,1,1,2 (cart is row 4, after click row 3)
#   u2: view(i1) view(i2) click(i2)                 t=0,1,2
#   u3: view(i2) cart(i2) zap(i3)                    t=5,6,7 ("zap" is a custom behavior)
EVENTS = """user_id,item_id,timestamp,behavior
u1,i1,2024-01-01T00:00:00Z,view
u2,i1,2024-01-01T00:00:00Z,view
u1,i1,2024-01-01T00:00:01Z,click
u1,i1,2024-01-01T00:00:01Z,cart
u2,i2,2024-01-01T00:00:01Z,view
u1,i1,2024-01-01T00:00:02Z,purchase
u2,i2,2024-01-02T00:00:02Z,click
u3,i2,2024-01-02T00:00:05Z,view
u3,i2,2024-01-02T00:00:06Z,cart
u3,i3,2024-01-02T00:00:07Z,zap
"""
ITEMS = """item_id,title
i1,Kettle
i2,Yoga mat
"""


@pytest.fixture()
def tiny(ws: Workspace, tmp_path: Path) -> Workspace:
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    ingest(ws, tmp_path / "events.csv", tmp_path / "items.csv", IngestOptions(name="tiny"))
    return ws


def rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.itertuples(index=False)]


def test_funnel_in_canonical_order_then_custom(tiny: Workspace) -> None:
    assert rows(O.funnel_counts(tiny, "tiny")) == [
        ("view", 4, 3),
        ("click", 2, 2),
        ("cart", 2, 2),
        ("purchase", 1, 1),
        ("zap", 1, 1),
    ]


def test_daily_counts_by_behavior(tiny: Workspace) -> None:
    frame = O.daily_counts(tiny, "tiny")
    got = [(d.strftime("%Y-%m-%d"), b, n) for d, b, n in rows(frame)]
    assert got == [
        ("2024-01-01", "cart", 1),
        ("2024-01-01", "click", 1),
        ("2024-01-01", "purchase", 1),
        ("2024-01-01", "view", 3),
        ("2024-01-02", "cart", 1),
        ("2024-01-02", "click", 1),
        ("2024-01-02", "view", 1),
        ("2024-01-02", "zap", 1),
    ]


def test_events_per_user_and_per_item_distributions(tiny: Workspace) -> None:
    # u1: 4, u2: 3, u3: 3 events; i1: 5, i2: 4, i3: 1 events
    assert rows(O.events_per_user(tiny, "tiny")) == [(3, 2), (4, 1)]
    assert rows(O.events_per_item(tiny, "tiny")) == [(1, 1), (4, 1), (5, 1)]


def test_top_items_with_titles_and_id_fallback(tiny: Workspace) -> None:
    assert rows(O.top_items(tiny, "tiny")) == [
        ("i1", "Kettle", 5, 2),
        ("i2", "Yoga mat", 4, 2),
        ("i3", "i3", 1, 1),
    ]
    assert rows(O.top_items(tiny, "tiny", k=1)) == [("i1", "Kettle", 5, 2)]


def test_transitions_follow_time_then_file_row(tiny: Workspace) -> None:
    got = {(a, b): n for a, b, n in rows(O.behavior_transitions(tiny, "tiny"))}
    assert got == {
        ("view", "click"): 2,  # u1, u2
        ("click", "cart"): 1,  # u1 (same second: row order)
        ("cart", "purchase"): 1,  # u1
        ("view", "view"): 1,  # u2
        ("view", "cart"): 1,  # u3
        ("cart", "zap"): 1,  # u3
    }
    assert sum(got.values()) == 10 - 3  # one fewer pair than events, per user


def test_transition_matrix_is_square_in_funnel_order(tiny: Workspace) -> None:
    order = O.funnel_counts(tiny, "tiny")[S.BEHAVIOR].tolist()
    matrix = O.transition_matrix(O.behavior_transitions(tiny, "tiny"), order)
    assert list(matrix.index) == list(matrix.columns) == order
    assert matrix.loc["view", "click"] == 2 and matrix.loc["click", "view"] == 0
    assert int(matrix.to_numpy().sum()) == 7


def test_transition_matrix_of_no_transitions() -> None:
    empty = pd.DataFrame({O.FROM_BEHAVIOR: [], O.TO_BEHAVIOR: [], O.TRANSITIONS: []})
    matrix = O.transition_matrix(empty, ["view"])
    assert matrix.shape == (1, 1) and int(matrix.iloc[0, 0]) == 0


def test_compute_overview_bundles_every_table(tiny: Workspace) -> None:
    view = O.compute_overview(tiny, "tiny")
    assert int(view.funnel[O.EVENTS].sum()) == 10
    assert int(view.daily[O.EVENTS].sum()) == 10
    assert int(view.transitions[O.TRANSITIONS].sum()) == 7
    with pytest.raises(NotFoundError):
        O.compute_overview(tiny, "absent")


def test_transition_matrix_folds_the_tail_into_other() -> None:
    pairs = [("view", "click", 4), ("click", "b1", 1), ("b1", "b2", 2), ("b2", "view", 3)]
    long = pd.DataFrame(pairs, columns=[O.FROM_BEHAVIOR, O.TO_BEHAVIOR, O.TRANSITIONS])
    matrix = O.transition_matrix(long, ["view", "click", "b1", "b2"], limit=3)
    assert list(matrix.index) == ["view", "click", O.OTHER]
    assert matrix.loc["view", "click"] == 4
    assert matrix.loc["click", O.OTHER] == 1 and matrix.loc[O.OTHER, O.OTHER] == 2
    assert matrix.loc[O.OTHER, "view"] == 3 and int(matrix.to_numpy().sum()) == 10
    assert O.first_behaviors(["a", "b", "c"], limit=3) == ["a", "b", "c"]
    assert O.first_behaviors(["a", "b", "c", "d"], limit=3) == ["a", "b"]
