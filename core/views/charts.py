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
import math
from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from core import schema as S
from core._checks import finite_float
from core.ingest import overview as O

MAX_LABEL = 60
CHART_HEIGHT = 380
LOG_HALF = math.log10(0.5)  # bottom of a log count axis, in axis units: a bin of 1 is a bar, not a sliver
BAR_PX = 24  # height of one labelled bar in a chart of names (top items)


def safe_label(value: object, max_len: int | None = None) -> str:
    """``value`` as text Plotly shows literally: cut to ``max_len`` chars, then HTML-escaped."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return html.escape(text, quote=False)


def safe_labels(values: Iterable[object], max_len: int | None = None) -> list[str]:
    """:func:`safe_label` of every value."""
    return [safe_label(v, max_len) for v in values]


# Names (IDs, behaviors, groups) sit on a category axis: "658470" or a behavior code "1" is a name, not a number.
CATEGORY = "category"


def layout(fig: go.Figure, title: str, subtitle: list[str] | None = None, **kwargs: object) -> go.Figure:
    """The house layout: escaped title (and subtitle lines), fixed height, tight margins, then ``kwargs``."""
    heading: dict[str, object] = {"text": safe_label(title)}
    if subtitle:  # short lines: a half-width chart cuts a long one
        heading["subtitle"] = {"text": "<br>".join(safe_labels(subtitle))}
    top = 50 + 18 * len(subtitle or [])
    fig.update_layout(title=heading, height=CHART_HEIGHT, margin=dict(l=10, r=10, t=top, b=10), **kwargs)
    return fig


def events_over_time(daily: pd.DataFrame, order: list[str] | None = None, title: str = "Events per day") -> go.Figure:
    """One line per behavior over days, from ``[day, behavior, events]``."""
    behaviors = order if order is not None else O.behavior_order(sorted(set(daily[S.BEHAVIOR].astype(str))))
    fig = go.Figure()
    for behavior in behaviors:
        part = daily[daily[S.BEHAVIOR] == behavior]
        if part.empty:
            continue
        name = safe_label(behavior, MAX_LABEL)
        fig.add_trace(
            go.Scatter(
                x=part[O.DAY],
                y=part[O.EVENTS].tolist(),
                mode="lines",
                name=name,
                hovertemplate="%{fullData.name}<br>%{x|%Y-%m-%d}: %{y} events<extra></extra>",
            )
        )
    return layout(fig, title, xaxis_title="day (UTC)", yaxis_title="events", hovermode="closest")


def count_histogram(distribution: pd.DataFrame, count_col: str, title: str) -> go.Figure:
    """Histogram of events per entity with a log-scale y axis.

    ``distribution`` is ``[events, <count_col>]``: how many users (or items)
    have exactly that many events; Plotly bins the ``events`` axis and sums.
    """
    fig = go.Figure(
        go.Histogram(
            x=distribution[O.EVENTS].tolist(),
            y=distribution[count_col].tolist(),
            histfunc="sum",
            nbinsx=50,
            hovertemplate=f"%{{x}} events: %{{y}} {safe_label(count_col)}<extra></extra>",
        )
    )
    return layout(
        fig,
        title,
        xaxis_title=f"events per {count_col.rstrip('s')}",
        # ticks at powers of ten, and room below 1 so that a bin of one shows as a bar, not a sliver
        yaxis=dict(title=f"{count_col} (log scale)", type="log", dtick=1, autorangeoptions=dict(minallowed=LOG_HALF)),
        bargap=0.05,
    )


def item_labels(items: pd.DataFrame) -> list[str]:
    """Display labels of items: the title (the item ID without one), plus the item ID when two titles collide
    (escaped)."""
    ids = [safe_label(i, MAX_LABEL) for i in items[S.ITEM_ID]]
    titles = [safe_label(t, MAX_LABEL) or i for t, i in zip(items[S.ITEM_TITLE], ids)]
    dupes = {t for t in titles if titles.count(t) > 1}
    return [f"{t} [{i}]" if t in dupes else t for t, i in zip(titles, ids)]


def top_items(items: pd.DataFrame, title: str = "Top items by events") -> go.Figure:
    """Horizontal bars of ``[item_id, title, events, users]``, the top item at the top."""
    labels = item_labels(items)
    fig = go.Figure(
        go.Bar(
            x=items[O.EVENTS].tolist(),
            y=labels,
            orientation="h",
            customdata=items[O.USERS].tolist(),
            hovertemplate="%{y}<br>%{x} events, %{customdata} users<extra></extra>",
        )
    )
    fig = layout(
        fig, title, xaxis=dict(title="events"), yaxis=dict(type=CATEGORY, autorange="reversed", automargin=True)
    )
    return fig.update_layout(height=max(CHART_HEIGHT, 80 + BAR_PX * len(labels)))  # room for every item's label


def transition_heatmap(matrix: pd.DataFrame, title: str = "Next behavior (within a user)") -> go.Figure:
    """Heatmap of a square transition count matrix (rows: behavior, columns: the one after it)."""
    totals = matrix.sum(axis=1).replace(0, 1)
    share = matrix.div(totals, axis=0)
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy().tolist(),
            x=safe_labels(matrix.columns, MAX_LABEL),
            y=safe_labels(matrix.index, MAX_LABEL),
            customdata=share.round(3).to_numpy().tolist(),
            text=matrix.to_numpy().tolist(),
            texttemplate="%{text}",
            colorscale="Blues",
            hovertemplate="%{y} → %{x}: %{z} (%{customdata:.1%} of %{y})<extra></extra>",
        )
    )
    return layout(
        fig,
        title,
        xaxis=dict(title="next behavior", type=CATEGORY),
        yaxis=dict(title="behavior", type=CATEGORY, autorange="reversed"),
    )


# -- training curves (the Train page) -------------------------------------------------
VALID_RANKING = ("HR@10", "NDCG@10", "MRR@10")  # drawn on the left axis; RMSE on the right


def training_loss(
    step_losses: list[list[float]], history: list[dict[str, object]], title: str = "Training loss"
) -> go.Figure:
    """Loss per step (``[x, loss]``, x in epochs) and the per-epoch means of each loss part."""
    fig = go.Figure()
    if step_losses:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in step_losses],
                y=[finite_float(p[1]) for p in step_losses],
                mode="lines",
                name="loss (step)",
                line=dict(width=1),
                hovertemplate="epoch %{x:.2f}: %{y:.4f}<extra></extra>",
            )
        )
    epochs = [rec.get("epoch") for rec in history]
    for key, name in (("loss", "loss (epoch mean)"), ("loss_engagement", "engagement"), ("loss_rating", "rating")):
        if any(key in rec for rec in history):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[finite_float(rec.get(key)) for rec in history],
                    mode="lines+markers",
                    name=name,
                    hovertemplate="%{fullData.name}, epoch %{x}: %{y:.4f}<extra></extra>",
                )
            )
    return layout(fig, title, xaxis_title="epoch", yaxis_title="loss", hovermode="closest")


def validation_metrics(history: list[dict[str, object]], title: str = "Validation metrics") -> go.Figure:
    """HR@10, NDCG@10, MRR@10 (left axis) and RMSE (right axis) after every epoch."""
    fig = go.Figure()
    epochs = [rec.get("epoch") for rec in history]
    for metric in VALID_RANKING:
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=[finite_float(rec.get(f"valid_{metric}")) for rec in history],
                mode="lines+markers",
                name=metric,
                hovertemplate=f"{metric}, epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    rmse = [finite_float(rec.get("valid_RMSE")) for rec in history]
    if any(v is not None for v in rmse):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=rmse,
                mode="lines+markers",
                name="RMSE",
                yaxis="y2",
                line=dict(dash="dot"),
                hovertemplate="RMSE, epoch %{x}: %{y:.4f}<extra></extra>",
            )
        )
    return layout(
        fig,
        title,
        xaxis=dict(title="epoch", dtick=1),
        yaxis=dict(title="ranking metric"),
        yaxis2=dict(title="RMSE", overlaying="y", side="right", showgrid=False),
        hovermode="closest",
    )


# -- fusion trade-off (the Fusion page) ------------------------------------------------
TRADEOFF_LABELS = {
    "HR@10": "HR@10",
    "NDCG@10": "NDCG@10",
    "MRR@10": "MRR@10",
    "coverage@10": "catalogue coverage@10",
    "mean_popularity@10": "mean popularity of recommended items (events)",
}


def _weights_label(row: dict[str, object], signals: Iterable[str]) -> str:
    return ", ".join(f"{safe_label(s)} {float(row[s]):.2f}" for s in signals)  # type: ignore[arg-type]


def tradeoff(
    sweep: pd.DataFrame,
    x: str,
    y: str,
    signals: Iterable[str],
    current: dict[str, object] | None = None,
    title: str = "Trade-off over the weight simplex",
) -> go.Figure:
    """One marker per swept weight setting (``sweep``: a column per signal and per metric), current one starred.

    ``current`` holds the same keys for the setting now on the sliders (drawn as a star).
    """
    signals = list(signals)
    labels = [_weights_label(row, signals) for row in sweep.to_dict("records")]
    fig = go.Figure(
        go.Scatter(
            x=sweep[x].tolist(),
            y=sweep[y].tolist(),
            mode="markers",
            name="swept weights",
            text=labels,
            marker=dict(size=8, opacity=0.6),
            hovertemplate=f"%{{text}}<br>{safe_label(x)} %{{x:.4f}}, {safe_label(y)} %{{y:.4f}}<extra></extra>",
        )
    )
    if current is not None:
        fig.add_trace(
            go.Scatter(
                x=[current[x]],
                y=[current[y]],
                mode="markers",
                name="current weights",
                text=[_weights_label(current, signals)],
                marker=dict(size=16, symbol="star", color="crimson"),
                hovertemplate="current: %{text}<br>%{x:.4f}, %{y:.4f}<extra></extra>",
            )
        )
    return layout(
        fig,
        title,
        xaxis_title=safe_label(TRADEOFF_LABELS.get(x, x)),
        yaxis_title=safe_label(TRADEOFF_LABELS.get(y, y)),
        hovermode="closest",
    )
