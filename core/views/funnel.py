"""The behavior chart of the Data page: a funnel only when the counts make one (``go.Figure``, no streamlit).

Users per behavior, in funnel order, make a funnel only when no later behavior has more users than an
earlier one; then its percentages are of the first stage. Otherwise (every user of a log purchases, but
not every one views) a funnel would show conversion above 100%: :func:`funnel` draws bars of each
behavior's share of all users instead, and its subtitle says so.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from core import schema as S
from core.ingest import overview as O
from core.views.charts import CATEGORY, layout, safe_labels


def is_funnel(values: list[int]) -> bool:
    """Whether counts in stage order never grow (a later stage > an earlier one is no funnel)."""
    return all(later <= earlier for earlier, later in zip(values, values[1:]))


def funnel(
    counts: pd.DataFrame, measure: str = O.USERS, title: str = "Behavior funnel", total: int | None = None
) -> go.Figure:
    """``counts`` (``[behavior, events, users]``, in funnel order) by ``measure``: a funnel when the counts
    never grow from one behavior to the next, else bars of each behavior's share of ``total`` (all users).

    A funnel's percentages are of its first stage; when a later behavior has more users than an earlier one,
    that reads as conversion above 100%, so the bars say what their percentages are instead.
    """
    labels = safe_labels(counts[S.BEHAVIOR])
    values = [int(v) for v in counts[measure]]
    if is_funnel(values):
        first = labels[0] if labels else ""
        fig = go.Figure(
            go.Funnel(
                y=labels,
                x=values,
                textinfo="value+percent initial",
                hovertemplate=f"%{{y}}: %{{x}} {measure} (%{{percentInitial:.1%}} of {first})<extra></extra>",
            )
        )
        note = [f"{measure} who did each behavior", f"% = share of the {measure} who did {first}"]
        return layout(fig, title, note, yaxis=dict(type=CATEGORY))
    return behavior_shares(counts, measure, total if total else max(values, default=1))


def behavior_shares(counts: pd.DataFrame, measure: str, total: int, title: str = "Users per behavior") -> go.Figure:
    """Horizontal bars: the share of all ``total`` {measure} who did each behavior at least once."""
    labels = safe_labels(counts[S.BEHAVIOR])
    values = [int(v) for v in counts[measure]]
    shares = [v / total if total else 0.0 for v in values]
    fig = go.Figure(
        go.Bar(
            x=shares,
            y=labels,
            orientation="h",
            text=[f"{v:,} ({s:.0%})" for v, s in zip(values, shares)],
            textposition="auto",
            hovertemplate=f"%{{y}}: %{{text}} of all {total:,} {measure}<extra></extra>",
        )
    )
    note = [f"share of all {total:,} {measure} who did each behavior at least once"]
    grown = next(((a, b) for (a, x), (b, y) in zip(zip(labels, values), zip(labels[1:], values[1:])) if y > x), None)
    if grown is not None:
        note.append(f"not a funnel: more {measure} did {grown[1]} than {grown[0]}")
    return layout(
        fig,
        title,
        note,
        xaxis=dict(title=f"share of all {measure}", tickformat=".0%", range=[0, 1.05]),
        yaxis=dict(type=CATEGORY, autorange="reversed", automargin=True),
    )
