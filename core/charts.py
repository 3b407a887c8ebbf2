"""Plotly figure builders for the overview tables (return ``go.Figure``, no streamlit).

Security: Plotly renders a subset of HTML (``<a href>``, ``<b>``, ``<br>``,
``<span style>``...) inside every text it draws: titles, tick labels, legend
entries, hover labels. Item titles and behavior labels come from uploaded
files, so every such label goes through :func:`safe_label`, which escapes
``&``, ``<`` and ``>``; Plotly turns the entities back into the literal
characters on screen, so the text reads as typed and nothing is interpreted.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from core import overview as O
from core import schema as S

MAX_LABEL = 60
CHART_HEIGHT = 380


def safe_label(value: object, max_len: int | None = None) -> str:
    """``value`` as text Plotly shows literally: cut to ``max_len`` chars, then HTML-escaped."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return html.escape(text, quote=False)


def safe_labels(values: Iterable[object], max_len: int | None = None) -> list[str]:
    """:func:`safe_label` of every value."""
    return [safe_label(v, max_len) for v in values]


def _layout(fig: go.Figure, title: str, **kwargs: object) -> go.Figure:
    fig.update_layout(
        title=safe_label(title), height=CHART_HEIGHT, margin=dict(l=10, r=10, t=50, b=10), **kwargs
    )
    return fig


def funnel(counts: pd.DataFrame, measure: str = O.USERS, title: str = "Behavior funnel") -> go.Figure:
    """Funnel of ``counts`` (``[behavior, events, users]``, in funnel order) by ``measure``."""
    fig = go.Figure(go.Funnel(
        y=safe_labels(counts[S.BEHAVIOR]),
        x=counts[measure].tolist(),
        textinfo="value+percent initial",
        hovertemplate=f"%{{y}}: %{{x}} {measure}<extra></extra>",
    ))
    return _layout(fig, title)


def events_over_time(daily: pd.DataFrame, order: list[str] | None = None,
                     title: str = "Events per day") -> go.Figure:
    """One line per behavior over days, from ``[day, behavior, events]``."""
    behaviors = order if order is not None else O.behavior_order(sorted(set(daily[S.BEHAVIOR].astype(str))))
    fig = go.Figure()
    for behavior in behaviors:
        part = daily[daily[S.BEHAVIOR] == behavior]
        if part.empty:
            continue
        name = safe_label(behavior, MAX_LABEL)
        fig.add_trace(go.Scatter(
            x=part[O.DAY], y=part[O.EVENTS].tolist(), mode="lines", name=name,
            hovertemplate="%{fullData.name}<br>%{x|%Y-%m-%d}: %{y} events<extra></extra>",
        ))
    return _layout(fig, title, xaxis_title="day (UTC)", yaxis_title="events", hovermode="closest")


def count_histogram(distribution: pd.DataFrame, count_col: str, title: str) -> go.Figure:
    """Histogram of events per entity with a log-scale y axis.

    ``distribution`` is ``[events, <count_col>]``: how many users (or items)
    have exactly that many events; Plotly bins the ``events`` axis and sums.
    """
    fig = go.Figure(go.Histogram(
        x=distribution[O.EVENTS].tolist(), y=distribution[count_col].tolist(), histfunc="sum",
        nbinsx=50, hovertemplate=f"%{{x}} events: %{{y}} {safe_label(count_col)}<extra></extra>",
    ))
    return _layout(fig, title, xaxis_title=f"events per {count_col.rstrip('s')}",
                   yaxis_title=f"{count_col} (log scale)", yaxis_type="log", bargap=0.05)


def item_labels(items: pd.DataFrame) -> list[str]:
    """Display labels of items: the title, plus the item ID when two titles collide (escaped)."""
    titles = [safe_label(t, MAX_LABEL) for t in items[S.ITEM_TITLE]]
    ids = [safe_label(i, MAX_LABEL) for i in items[S.ITEM_ID]]
    dupes = {t for t in titles if titles.count(t) > 1}
    return [f"{t} [{i}]" if t in dupes else t for t, i in zip(titles, ids)]


def top_items(items: pd.DataFrame, title: str = "Top items by events") -> go.Figure:
    """Horizontal bars of ``[item_id, title, events, users]``, the top item at the top."""
    labels = item_labels(items)
    fig = go.Figure(go.Bar(
        x=items[O.EVENTS].tolist(), y=labels, orientation="h",
        customdata=items[O.USERS].tolist(),
        hovertemplate="%{y}<br>%{x} events, %{customdata} users<extra></extra>",
    ))
    return _layout(fig, title, xaxis=dict(title="events"), yaxis=dict(autorange="reversed", automargin=True))


def transition_heatmap(matrix: pd.DataFrame, title: str = "Next behavior (within a user)") -> go.Figure:
    """Heatmap of a square transition count matrix (rows: behavior, columns: the one after it)."""
    totals = matrix.sum(axis=1).replace(0, 1)
    share = matrix.div(totals, axis=0)
    fig = go.Figure(go.Heatmap(
        z=matrix.to_numpy().tolist(),
        x=safe_labels(matrix.columns, MAX_LABEL),
        y=safe_labels(matrix.index, MAX_LABEL),
        customdata=share.round(3).to_numpy().tolist(),
        text=matrix.to_numpy().tolist(), texttemplate="%{text}",
        colorscale="Blues",
        hovertemplate="%{y} → %{x}: %{z} (%{customdata:.1%} of %{y})<extra></extra>",
    ))
    return _layout(fig, title, xaxis=dict(title="next behavior"),
                   yaxis=dict(title="behavior", autorange="reversed"))
