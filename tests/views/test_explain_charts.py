"""core.views.explain_charts: figures of explanations and influence reports on small hand-built inputs."""

from __future__ import annotations

import pytest

from core.explain.explanation import EventAttribution, Explanation
from core.views.explain_charts import (
    behavior_sums,
    deletion_chart,
    influence_bars,
    influence_by_group,
    timeline,
    token_html,
)

EVIL = "<script>alert(1)</script>"


def explanation(values: list[float], heuristic: bool = False) -> Explanation:
    behaviors = ["purchase", "view", "cart", "view"]
    events = [
        EventAttribution(
            i,
            behaviors[i],
            f"I{i}",
            EVIL if i == 0 else f"Item {i}",
            None,
            f"2024-01-0{i + 1}T12:00:00Z",
            5.0 if i == 2 else None,
            v,
        )
        for i, v in enumerate(values)
    ]
    return Explanation(
        "u",
        "I9",
        "engagement",
        "attention" if heuristic else "ig",
        events,
        -1.0,
        -2.0,
        0.0,
        1.0,
        aopc=0.4,
        aopc_random=0.1,
        heuristic=heuristic,
        deletion_curve=[-1.0, -1.5, -1.8, -1.9, -2.0],
        random_deletion_curve=[-1.0, -1.2, -1.4, -1.7, -2.0],
    )


def test_timeline_places_events_by_time_and_behavior_coloured_by_attribution() -> None:
    fig = timeline(explanation([0.5, -0.25, 0.0, 0.1]))
    trace = fig.data[0]
    assert list(trace.x) == [f"2024-01-0{i}T12:00:00" for i in range(1, 5)]
    assert list(trace.y) == ["purchase", "view", "cart", "view"]
    assert list(trace.marker.color) == [0.5, -0.25, 0.0, 0.1]
    assert (trace.marker.cmin, trace.marker.cmax) == (-0.5, 0.5)  # diverging, centred on 0
    assert trace.marker.colorscale[0][1] != trace.marker.colorscale[-1][1]
    assert list(fig.layout.yaxis.categoryarray) == ["view", "cart", "purchase"]  # funnel order
    assert fig.layout.title.text == "Event timeline: attribution per event"
    assert trace.customdata[0][0] == "&lt;script&gt;alert(1)&lt;/script&gt;"  # escaped for Plotly
    assert list(trace.customdata[2]) == ["Item 2", "I2", "5"]
    assert "%{customdata[0]}" in trace.hovertemplate


def test_timeline_of_attention_is_one_sided_and_labelled_heuristic() -> None:
    fig = timeline(explanation([0.1, 0.6, 0.2, 0.1], heuristic=True))
    assert fig.layout.title.text == "Event timeline: attention weight per event (heuristic)"
    assert (fig.data[0].marker.cmin, fig.data[0].marker.cmax) == (0.0, 0.6)


def test_timeline_of_an_empty_history_says_so() -> None:
    fig = timeline(explanation([]))
    assert len(fig.data[0].x) == 0
    assert fig.layout.annotations[0].text == "no events in the explained history"


def test_behavior_sums_add_attributions_per_behavior() -> None:
    fig = behavior_sums(explanation([0.5, -0.25, 0.125, -0.5]))
    assert list(fig.data[0].x) == ["view", "purchase", "cart"]  # largest |sum| first
    assert list(fig.data[0].y) == [-0.75, 0.5, 0.125]


def test_deletion_chart_draws_both_curves_with_their_aopc() -> None:
    fig = deletion_chart(explanation([0.5, -0.25, 0.0, 0.1]))
    assert [t.name for t in fig.data] == ["by attribution (AOPC 0.4)", "random order (AOPC 0.1)"]
    assert list(fig.data[0].x) == [0, 1, 2, 3, 4]
    assert list(fig.data[0].y) == [-1.0, -1.5, -1.8, -1.9, -2.0]
    assert list(fig.data[1].y) == [-1.0, -1.2, -1.4, -1.7, -2.0]


REPORT = {
    "per_behavior_share": {"view": 0.6, "purchase": 0.4},
    "per_event": {"view": 0.01, "purchase": 0.05},
    "per_behavior_signed": {"view": -0.002, "purchase": 0.03},
    "intervals": {
        "per_behavior_share": {"view": [0.5, 0.7], "purchase": [0.3, 0.45]},
        "per_event": {"view": [0.008, 0.012], "purchase": [None, None]},
        "per_behavior_signed": {"view": [-0.004, 0.001], "purchase": [0.02, 0.04]},
    },
}


def test_influence_bars_carry_asymmetric_interval_error_bars() -> None:
    fig = influence_bars(REPORT, "share")
    bar = fig.data[0]
    assert list(bar.x) == ["view", "purchase"]
    assert list(bar.y) == [0.6, 0.4]
    assert list(bar.error_y.array) == pytest.approx([0.1, 0.05])
    assert list(bar.error_y.arrayminus) == pytest.approx([0.1, 0.1])
    assert fig.layout.yaxis.title.text == "share of total |attribution|"


def test_influence_bars_of_other_estimands_and_missing_intervals() -> None:
    fig = influence_bars(REPORT, "per_event")
    assert list(fig.data[0].y) == [0.01, 0.05]
    assert fig.data[0].error_y.array[1] is None  # no interval: no error bar
    assert list(influence_bars(REPORT, "signed").data[0].y) == [-0.002, 0.03]


def test_influence_by_group_keeps_the_order_and_row_counts() -> None:
    groups = {
        "<1h": {"share": 0.7, "per_event": 0.2, "signed": 0.1, "rows": 7},
        ">7d": {"share": 0.3, "per_event": 0.1, "signed": -0.1, "rows": 3},
    }
    fig = influence_by_group(groups, "signed", "Influence by time gap", "age")
    assert list(fig.data[0].x) == ["&lt;1h", "&gt;7d"]
    assert list(fig.data[0].y) == [0.1, -0.1]
    assert list(fig.data[0].customdata) == [7, 3]
    assert fig.layout.xaxis.title.text == "age"


def test_token_html_shades_escapes_and_joins_word_pieces() -> None:
    out = token_html(["red", "shoe", "##s", "<b>"], [1.0, -0.5, 0.0, 0.25])
    assert out.startswith('<div class="tokens"') and out.count("<span") == 4
    assert "rgba(33,102,172,1.00)" in out and "rgba(178,24,43,0.50)" in out
    assert "&lt;b&gt;" in out and "<b>" not in out
    assert "shoe</span><span" in out  # "##s" continues "shoe" without a space
    assert ">s</span>" in out


def test_every_axis_of_names_is_categorical() -> None:
    """Behavior codes ("1", "2") and numeric categories ("1234") are names: never a linear axis."""
    numeric = {"1": {"share": 0.7, "rows": 7}, "1234": {"share": 0.3, "rows": 3}}
    assert influence_by_group(numeric, "share").layout.xaxis.type == "category"
    assert influence_bars({"per_behavior_share": {"1": 0.6, "2": 0.4}}).layout.xaxis.type == "category"
    exp = explanation([0.5, -0.25, 0.125, -0.5])
    assert behavior_sums(exp).layout.xaxis.type == "category"
    assert timeline(exp).layout.yaxis.type == "category"
