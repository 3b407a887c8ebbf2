"""Chart builders: right figure types, and user labels never rendered as HTML."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go

from core import schema as S
from core.ingest import overview as O
from core.views import charts
from core.views.funnel import funnel

EVIL = "<script>alert(1)</script>"
EVIL_LINK = '<a href="javascript:alert(1)">x</a> & co'


def strings(fig: go.Figure) -> list[str]:
    """Every string in the figure's JSON (what the browser receives), decoded."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(fig.to_json()))
    return out


def assert_inert(fig: go.Figure) -> None:
    texts = strings(fig)
    assert not [t for t in texts if "<script" in t or "<a " in t], texts
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in t for t in texts)


def test_safe_label_escapes_and_truncates() -> None:
    assert charts.safe_label(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert charts.safe_label("a & b") == "a &amp; b"
    assert charts.safe_label(None) == ""
    assert charts.safe_label("x" * 10, max_len=5) == "xxxx…"
    assert charts.safe_label("<" * 10, max_len=3) == "&lt;&lt;…"  # cut before escaping


def test_funnel_escapes_behavior_labels() -> None:
    counts = pd.DataFrame({S.BEHAVIOR: ["view", EVIL], O.EVENTS: [5, 2], O.USERS: [3, 1]})
    fig = funnel(counts)
    assert isinstance(fig.data[0], go.Funnel)
    assert list(fig.data[0].x) == [3, 1]
    assert_inert(fig)


def test_events_over_time_one_trace_per_behavior_escaped() -> None:
    daily = pd.DataFrame(
        {
            O.DAY: pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02"]),
            S.BEHAVIOR: ["view", EVIL, "view"],
            O.EVENTS: [3, 1, 2],
        }
    )
    fig = charts.events_over_time(daily, ["view", EVIL])
    assert [t.name for t in fig.data] == ["view", "&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert list(fig.data[0].y) == [3, 2]
    assert_inert(fig)


def test_count_histogram_has_log_y() -> None:
    dist = pd.DataFrame({O.EVENTS: [1, 2, 10], O.USERS: [5, 3, 1]})
    fig = charts.count_histogram(dist, O.USERS, "Events per user")
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.autorangeoptions.minallowed < 0  # the axis starts below 1: a bin of one is a bar
    assert fig.data[0].histfunc == "sum" and list(fig.data[0].y) == [5, 3, 1]


def test_top_items_escapes_titles_and_separates_equal_titles() -> None:
    items = pd.DataFrame(
        {
            S.ITEM_ID: ["i1", "i2", "<b>i3</b>"],
            S.ITEM_TITLE: [EVIL, "Mug", "Mug"],
            O.EVENTS: [9, 5, 4],
            O.USERS: [3, 2, 2],
        }
    )
    fig = charts.top_items(items)
    assert list(fig.data[0].y) == [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "Mug [i2]",
        "Mug [&lt;b&gt;i3&lt;/b&gt;]",
    ]
    assert_inert(fig)


def test_transition_heatmap_escapes_axes() -> None:
    matrix = pd.DataFrame([[1, 2], [0, 3]], index=["view", EVIL], columns=["view", EVIL])
    fig = charts.transition_heatmap(matrix)
    assert [list(row) for row in fig.data[0].z] == [[1, 2], [0, 3]]
    assert list(fig.data[0].x) == ["view", "&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert_inert(fig)


def test_link_markup_is_escaped_everywhere() -> None:
    counts = pd.DataFrame({S.BEHAVIOR: [EVIL_LINK], O.EVENTS: [1], O.USERS: [1]})
    texts = strings(funnel(counts, title=EVIL_LINK))
    assert not [t for t in texts if "<a " in t or " & co" in t]
    assert '&lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt; &amp; co' in texts


def test_top_items_with_numeric_ids_are_categories_not_numbers() -> None:
    """A log without titles labels items by ID; "658470" is a name, so the axis is categorical."""
    items = pd.DataFrame(
        {
            S.ITEM_ID: ["658470", "316365", "7"],
            S.ITEM_TITLE: [None, None, None],
            O.EVENTS: [9, 5, 4],
            O.USERS: [3, 2, 2],
        }
    )
    fig = charts.top_items(items)
    assert fig.layout.yaxis.type == "category"
    assert list(fig.data[0].y) == ["658470", "316365", "7"]
    many = pd.concat([items] * 7, ignore_index=True).assign(**{S.ITEM_ID: [str(i) for i in range(21)]})
    assert charts.top_items(many).layout.height >= 21 * charts.BAR_PX  # room for every label, none skipped


def test_transition_heatmap_of_behavior_codes_has_category_axes() -> None:
    matrix = pd.DataFrame([[1, 2], [0, 3]], index=["1", "2"], columns=["1", "2"])
    layout = charts.transition_heatmap(matrix).layout
    assert (layout.xaxis.type, layout.yaxis.type) == ("category", "category")


def test_a_funnel_says_its_percentages_are_of_the_first_stage() -> None:
    counts = pd.DataFrame({S.BEHAVIOR: ["view", "cart", "purchase"], O.EVENTS: [9, 4, 2], O.USERS: [5, 3, 3]})
    fig = funnel(counts, total=6)
    assert isinstance(fig.data[0], go.Funnel) and list(fig.data[0].x) == [5, 3, 3]
    assert fig.layout.title.text == "Behavior funnel" and fig.layout.yaxis.type == "category"
    assert fig.layout.title.subtitle.text == "users who did each behavior<br>% = share of the users who did view"


def test_a_growing_funnel_is_drawn_as_shares_of_all_users() -> None:
    """Every user purchased but not every one viewed: a funnel would show purchase at 104% of view."""
    counts = pd.DataFrame({S.BEHAVIOR: ["view", "purchase"], O.EVENTS: [30, 26], O.USERS: [25, 26]})
    fig = funnel(counts, total=26)
    bars = fig.data[0]
    assert isinstance(bars, go.Bar) and list(bars.y) == ["view", "purchase"]
    assert list(bars.x) == [25 / 26, 1.0] and list(bars.text) == ["25 (96%)", "26 (100%)"]
    assert fig.layout.title.text == "Users per behavior"
    assert fig.layout.title.subtitle.text.split("<br>") == [
        "share of all 26 users who did each behavior at least once",
        "not a funnel: more users did purchase than view",
    ]
    assert (fig.layout.xaxis.tickformat, fig.layout.yaxis.type) == (".0%", "category")
