"""Plotly figures of explanations and influence reports (return ``go.Figure``, no streamlit).

- :func:`timeline`: one marker per event of an explanation, x = time, y = behavior, colour =
  attribution on a diverging scale centred on 0 (attention weights: a one-sided scale);
- :func:`behavior_sums`: Σ of one explanation's attributions by behavior;
- :func:`influence_bars`: one of the global per-behavior estimands of an influence report,
  with its 95% bootstrap interval as error bars;
- :func:`influence_by_group`: the same estimand by time-gap bucket or by item category;
- :func:`deletion_chart`: the deletion curve of the attribution order against random orders;
- :func:`token_html`: an HTML snippet of text tokens shaded by their attributions.

Every label that can come from user data (behavior names, item titles and IDs, categories)
goes through :func:`core.views.charts.safe_label`, so Plotly shows it literally.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core._checks import finite_float
from core.explain.counterfactual import CounterfactualSet
from core.explain.explanation import Explanation
from core.explain.influence.ablation import AblationResult
from core.explain.influence.estimands import behavior_totals
from core.explain.influence.report import InfluenceReport
from core.ingest.overview import behavior_order
from core.views.charts import CHART_HEIGHT, MAX_LABEL, safe_label, safe_labels

POSITIVE, NEGATIVE = "#2166ac", "#b2182b"  # the ends of the diverging scale (RdBu)
# a result object or its dict (as the CLI prints it, as a session keeps it)
Reported = InfluenceReport | AblationResult | CounterfactualSet | Mapping[str, Any]

DIVERGING = [[0.0, NEGATIVE], [0.5, "#f7f7f7"], [1.0, POSITIVE]]
ONE_SIDED = [[0.0, "#f7f7f7"], [1.0, POSITIVE]]
# statistic -> (InfluenceReport field, axis label)
STATISTICS: dict[str, tuple[str, str]] = {
    "share": ("per_behavior_share", "share of total |attribution|"),
    "per_event": ("per_event", "mean |attribution| of one event"),
    "signed": ("per_behavior_signed", "signed mean attribution of one event"),
}


def _layout(fig: go.Figure, title: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(title=safe_label(title), height=CHART_HEIGHT, margin=dict(l=10, r=10, t=50, b=10), **kwargs)
    return fig


def as_dict(report: Reported) -> dict[str, Any]:
    """An influence report (dataclass with ``to_dict``) or its dict, as a dict."""
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


# -- one explanation ------------------------------------------------------------------------------
def _hover_rows(exp: Explanation) -> list[list[str]]:
    """[title, item ID, value] per event, escaped for Plotly."""
    rows = []
    for e in exp.events:
        value = "" if e.value is None else f"{e.value:g}"
        rows.append([safe_label(e.title or e.item, MAX_LABEL), safe_label(e.item, MAX_LABEL), value])
    return rows


def timeline(exp: Explanation, title: str | None = None) -> go.Figure:
    """Events over time (x), by behavior (y), coloured and sized by attribution [n markers]."""
    heuristic = exp.heuristic
    title = title or (
        "Event timeline: attention weight per event (heuristic)"
        if heuristic
        else "Event timeline: attribution per event"
    )
    values = [finite_float(e.attribution) or 0.0 for e in exp.events]
    scale = max((abs(v) for v in values), default=0.0) or 1.0
    times = pd.to_datetime([e.time for e in exp.events], utc=True).tz_localize(None)
    order = safe_labels(behavior_order(sorted({e.behavior for e in exp.events})))
    name = "attention weight" if heuristic else "attribution"
    fig = go.Figure(
        go.Scatter(
            x=[t.isoformat() for t in times],
            y=safe_labels(e.behavior for e in exp.events),
            mode="markers",
            name=name,
            customdata=_hover_rows(exp),
            marker=dict(
                color=values,
                colorscale=ONE_SIDED if heuristic else DIVERGING,
                cmin=0.0 if heuristic else -scale,
                cmax=scale,
                size=[8 + 14 * abs(v) / scale for v in values],
                line=dict(width=1, color="#444"),
                colorbar=dict(title=name),
            ),
            hovertemplate=(
                "%{customdata[0]} (item %{customdata[1]})<br>%{y} · value %{customdata[2]}<br>"
                "%{x|%Y-%m-%d %H:%M} UTC<br>" + name + " %{marker.color:.4g}<extra></extra>"
            ),
        )
    )
    if not exp.events:
        fig.add_annotation(
            text="no events in the explained history", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    return _layout(
        fig,
        title,
        xaxis_title="time (UTC)",
        hovermode="closest",
        yaxis=dict(title="behavior", type="category", categoryorder="array", categoryarray=order),
    )


def behavior_sums(exp: Explanation, title: str = "Attribution by behavior (this explanation)") -> go.Figure:
    """Σ of the explanation's attributions per behavior (signed, target units), largest |Σ| first."""
    totals = behavior_totals(exp)
    values = list(totals.values())
    fig = go.Figure(
        go.Bar(
            x=safe_labels(totals),
            y=values,
            marker_color=[POSITIVE if v >= 0 else NEGATIVE for v in values],
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    label = "Σ attention weight" if exp.heuristic else "Σ attribution"
    return _layout(fig, title, xaxis=dict(title="behavior", type="category"), yaxis_title=label)


def deletion_chart(exp: Explanation, title: str = "Deletion curve: attribution order vs random") -> go.Figure:
    """Score after removing the k highest-attributed events, and the mean over random orders [n+1 each]."""
    fig = go.Figure()
    for curve, name, dash in (
        (exp.deletion_curve, f"by attribution (AOPC {_fmt(exp.aopc)})", "solid"),
        (exp.random_deletion_curve, f"random order (AOPC {_fmt(exp.aopc_random)})", "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=list(range(len(curve))),
                y=[finite_float(v) for v in curve],
                mode="lines+markers",
                name=name,
                line=dict(dash=dash),
                hovertemplate="%{x} removed: %{y:.4g}<extra>%{fullData.name}</extra>",
            )
        )
    return _layout(
        fig, title, xaxis_title="events removed", yaxis_title=safe_label(f"score ({exp.target})"), hovermode="x unified"
    )


def _fmt(value: Any) -> str:
    number = finite_float(value)
    return "n/a" if number is None else f"{number:.4g}"


# -- global influence -----------------------------------------------------------------------------
def influence_bars(report: Reported, stat: str = "share", title: str = "Influence by behavior") -> go.Figure:
    """One bar per behavior: estimand ``stat`` (see ``STATISTICS``) with its 95% interval as error bars."""
    d = as_dict(report)
    key, axis = STATISTICS[stat]
    values: Mapping[str, Any] = d.get(key) or {}
    intervals: Mapping[str, Any] = (d.get("intervals") or {}).get(key, {})
    order = behavior_order(list(values))
    ys = [finite_float(values[b]) for b in order]
    lows = [finite_float((intervals.get(b) or [None, None])[0]) for b in order]
    highs = [finite_float((intervals.get(b) or [None, None])[1]) for b in order]
    fig = go.Figure(
        go.Bar(
            x=safe_labels(order),
            y=ys,
            name=axis,
            error_y=dict(
                type="data",
                symmetric=False,
                array=[None if y is None or h is None else max(0.0, h - y) for y, h in zip(ys, highs)],
                arrayminus=[None if y is None or lo is None else max(0.0, y - lo) for y, lo in zip(ys, lows)],
            ),
            customdata=[[_fmt(lo), _fmt(hi)] for lo, hi in zip(lows, highs)],
            hovertemplate="%{x}: %{y:.4g}<br>95% interval [%{customdata[0]}, %{customdata[1]}]<extra></extra>",
        )
    )
    return _layout(fig, title, xaxis=dict(title="behavior", type="category"), yaxis_title=safe_label(axis))


def influence_by_group(
    groups: Mapping[str, Mapping[str, Any]],
    stat: str = "share",
    title: str = "Influence by group",
    axis_title: str = "group",
) -> go.Figure:
    """One bar per group (time-gap bucket or category, in the given order): ``stat`` and the rows behind it."""
    labels = list(groups)
    fig = go.Figure(
        go.Bar(
            x=safe_labels(labels, MAX_LABEL),
            y=[finite_float(groups[g].get(stat)) for g in labels],
            customdata=[int(groups[g].get("rows", 0)) for g in labels],
            hovertemplate="%{x}: %{y:.4g} (%{customdata} rows)<extra></extra>",
        )
    )
    return _layout(
        fig,
        title,
        xaxis=dict(title=safe_label(axis_title), type="category"),  # a category can be a number ("1234")
        yaxis_title=safe_label(STATISTICS[stat][1]),
    )


# -- text tokens ---------------------------------------------------------------------------------------
def token_html(tokens: Sequence[str], attributions: Sequence[float]) -> str:
    """Tokens as ``<span>``s shaded blue (raises the score) or red (lowers it) by |attribution|, escaped.

    WordPiece continuations (``##s``) join the previous token without a space.
    """
    values = [finite_float(a) or 0.0 for a in attributions]
    scale = max((abs(v) for v in values), default=0.0) or 1.0
    parts: list[str] = []
    for token, value in zip(tokens, values):
        text = str(token)
        glue = "" if text.startswith("##") and parts else (" " if parts else "")
        rgb = "33,102,172" if value >= 0 else "178,24,43"
        alpha = min(1.0, abs(value) / scale)
        parts.append(
            f'{glue}<span title="{value:+.4g}" style="background-color:rgba({rgb},{alpha:.2f});'
            f'padding:1px 2px;border-radius:3px">{html.escape(text.removeprefix("##"))}</span>'
        )
    return f'<div class="tokens" style="line-height:2">{"".join(parts)}</div>'
