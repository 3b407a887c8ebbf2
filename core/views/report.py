"""Exports: attributions and global influence as CSV, and a self-contained HTML report of one explanation.

CSV. One row per event of an explanation (:data:`ATTRIBUTION_COLUMNS`), or one row per
behavior, time-gap bucket and category of an influence report (:func:`influence_table`).
Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab or carriage return, and not a plain number) get a leading apostrophe.

HTML. :func:`html_report` is one file that opens offline: the plotly.js bundle is inlined
once in ``<head>``, the figures are inline scripts, a Content-Security-Policy forbids every
network request, and every piece of user text (IDs, titles, behaviors, the summary) is
HTML-escaped; strings inside figures are escaped for Plotly by :mod:`core.views.explain_charts`
and JSON-escaped (``<`` as ``\\u003c``) by Plotly.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from core.explain.explanation import TARGET_UNITS, Explanation
from core.explain.influence.estimands import behavior_totals
from core.explain.summary import reference_note, summarize
from core.ingest.overview import behavior_order
from core.views.explain_charts import STATISTICS, Reported, as_dict, behavior_sums, deletion_chart, timeline, token_html

ATTRIBUTION_COLUMNS = (
    "user",
    "item",
    "target",
    "method",
    "position",
    "behavior",
    "event_item",
    "title",
    "time",
    "value",
    "attribution",
)
INFLUENCE_META = ("run", "method", "target", "users", "k", "seed", "protocol")
ABLATION_METRICS = ("HR@10", "NDCG@10", "RMSE")
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table.data{border-collapse:collapse;font-size:.85rem}table.data td,table.data th{padding:2px 8px;
border-bottom:1px solid #eee;text-align:left}p.summary{font-size:1.05rem;background:#f4f8fb;padding:.8rem}
.note{color:#666;font-size:.85rem}
"""


# -- CSV ----------------------------------------------------------------------------------------------
def safe_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if isinstance(value, str) and _FORMULA.match(value) and not _NUMBER.match(value.strip()):
        return "'" + value
    return value


def _safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(safe_cell)
    return out


def attribution_rows(exp: Explanation) -> pd.DataFrame:
    """One row per event of ``exp`` (oldest first), columns :data:`ATTRIBUTION_COLUMNS`."""
    rows = [
        {
            "user": exp.user,
            "item": exp.item,
            "target": exp.target,
            "method": exp.method,
            "position": e.position,
            "behavior": e.behavior,
            "event_item": e.item,
            "title": e.title,
            "time": e.time,
            "value": e.value,
            "attribution": e.attribution,
        }
        for e in exp.events
    ]
    return pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))


def attributions_csv(exp: Explanation) -> str:
    """:func:`attribution_rows` as CSV text (formula-like text cells neutralized)."""
    return _safe_frame(attribution_rows(exp)).to_csv(index=False)


def _ablation_deltas(report: Mapping[str, Any], ablation: Reported | None) -> Mapping[str, Mapping[str, Any]]:
    """behavior -> metric deltas, from ``ablation`` (AblationResult, its dict, or deltas) or the report."""
    if ablation is None:
        return report.get("ablation") or {}
    data = as_dict(ablation)
    deltas = data.get("deltas")
    return deltas if isinstance(deltas, Mapping) else data


def _behavior_rows(report: Mapping[str, Any], deltas: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    intervals = report.get("intervals") or {}
    behaviors = behavior_order(list({**(report.get("per_behavior_share") or {}), **deltas}))
    rows = []
    for b in behaviors:
        row: dict[str, Any] = {
            "section": "behavior",
            "group": b,
            "rows": (report.get("events") or {}).get(b),
            "rows_settled": (report.get("events_settled") or {}).get(b),
        }
        for stat, (key, _) in STATISTICS.items():
            row[stat] = (report.get(key) or {}).get(b)
            low, high = (intervals.get(key) or {}).get(b) or [None, None]
            row[f"{stat}_low"], row[f"{stat}_high"] = low, high
        if deltas:
            for metric in ABLATION_METRICS:
                row[f"ablation_delta_{metric}"] = (deltas.get(b) or {}).get(metric)
            row["ablation_removed_events"] = (deltas.get(b) or {}).get("removed_events")
        rows.append(row)
    return rows


def influence_table(report: Reported, ablation: Reported | None = None) -> pd.DataFrame:
    """A global influence report as one long table: a row per behavior, time-gap bucket and category.

    Columns: the report's settings (run, method, target, users, k, seed, protocol), ``section``
    (behavior | time_gap | category), ``group``, ``rows``, and for each estimand (share,
    per_event, signed) its value; behaviors also get their 95% interval (``*_low``, ``*_high``),
    settled row counts and, when an ablation is given or in the report, the metric deltas.
    """
    d = as_dict(report)
    rows = _behavior_rows(d, _ablation_deltas(d, ablation))
    for section, key in (("time_gap", "by_time_gap"), ("category", "by_category")):
        for group, values in (d.get(key) or {}).items():
            rows.append(
                {
                    "section": section,
                    "group": group,
                    "rows": values.get("rows"),
                    **{stat: values.get(stat) for stat in STATISTICS},
                }
            )
    frame = pd.DataFrame(rows)
    for i, name in enumerate(INFLUENCE_META):
        frame.insert(i, name, d.get(name))
    return frame


def influence_csv(report: Reported, ablation: Reported | None = None) -> str:
    """:func:`influence_table` as CSV text (formula-like text cells neutralized)."""
    return _safe_frame(influence_table(report, ablation)).to_csv(index=False)


# -- HTML -----------------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:.{digits}g}" if math.isfinite(number) else "n/a"


def _table(frame: pd.DataFrame) -> str:
    """An escaped HTML table (no index, 4 significant digits)."""
    return frame.to_html(
        index=False, escape=True, border=0, classes="data", na_rep="", float_format=lambda x: f"{x:.4g}"
    )


def _figure(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def _section(title: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2>\n{body}\n</section>"


def _events_table(exp: Explanation) -> str:
    frame = attribution_rows(exp)[["position", "time", "behavior", "event_item", "title", "value", "attribution"]]
    return _table(frame)


def _counterfactual(cf: Reported | None) -> str:
    if cf is None:
        return "<p class='note'>Not computed.</p>"
    d = as_dict(cf)
    body = f"<p>{_esc(d.get('message'))}</p>"
    events = d.get("events") or []
    if events:
        cols = ["position", "time", "behavior", "item", "title", "value", "attribution"]
        frame = pd.DataFrame(events).reindex(columns=cols).rename(columns={"attribution": "LOO of the top-K margin"})
        body += _table(frame)
    return body


def _faithfulness(exp: Explanation) -> str:
    rows = pd.DataFrame(
        [{"order": "by attribution", "AOPC": exp.aopc}, {"order": "random (mean)", "AOPC": exp.aopc_random}]
    )
    note = (
        "AOPC: mean drop of the score as events are removed in this order; higher than random means the "
        "explanation ranks the events that really carry the score first."
    )
    return _table(rows) + f"<p class='note'>{_esc(note)}</p>" + _figure(deletion_chart(exp), "bl-deletion")


def _about(exp: Explanation) -> str:
    facts = [
        ("run", exp.run),
        ("user", exp.user),
        ("item", exp.item),
        ("item title", exp.item_title),
        ("method", exp.method + (" (heuristic)" if exp.heuristic else "")),
        ("target", exp.target),
        ("units", exp.units or TARGET_UNITS.get(exp.target)),
        ("score", _num(exp.score)),
        ("baseline score (every event masked)", _num(exp.baseline_score)),
        ("completeness delta", _num(exp.completeness_delta)),
        ("runtime (ms)", _num(exp.runtime_ms, 5)),
    ]
    return _table(pd.DataFrame(facts, columns=["field", "value"]))


def html_report(
    exp: Explanation,
    *,
    top: pd.DataFrame | None = None,
    counterfactual: Reported | None = None,
    tokens: tuple[Sequence[str], Sequence[float]] | None = None,
    title: str | None = None,
    summary: str | None = None,
    model_note: str | None = None,
) -> str:
    """One user's explanation as a self-contained HTML page (see the module doc).

    ``top``: the user's top-K table; ``counterfactual``: a CounterfactualSet (or its dict);
    ``tokens``: (tokens, attributions) of the item text; ``summary``: defaults to
    :func:`core.explain.summary.summarize`; ``model_note``: how the run was trained, under the title (such as
    "trained with DP, ε = 7.99, δ = 0.00106").
    """
    title = title or f"Why {exp.item_title or exp.item} for user {exp.user}"
    totals = pd.DataFrame(list(behavior_totals(exp).items()), columns=["behavior", "sum of attributions"])
    sections = [
        _section("Summary", f"<p class='summary'>{_esc(summary or summarize(exp))}</p>"),
        _section("Top recommendations", _table(top)) if top is not None else "",
        _section(
            "Events over time",
            _figure(timeline(exp), "bl-timeline")
            + f"<p class='note'>{_esc(reference_note(exp))}</p>"
            + _events_table(exp),
        ),
        _section("Per behavior", _figure(behavior_sums(exp), "bl-behaviors") + _table(totals)),
        _section("Counterfactual set", _counterfactual(counterfactual)),
        _section("Faithfulness", _faithfulness(exp)),
        _section("Text tokens", token_html(*tokens)) if tokens is not None else "",
        _section("About this explanation", _about(exp)),
    ]
    head = (
        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
    )
    note = f"<p class='note'>Model {_esc(model_note)}.</p>\n" if model_note else ""
    body = f"<h1>{_esc(title)}</h1>\n{note}" + "\n".join(s for s in sections if s)
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>\n{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n'
