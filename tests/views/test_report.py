"""core.views.report: attribution and influence CSVs, and the self-contained, escaped HTML report."""

from __future__ import annotations

import html
import io
import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from core.explain.explanation import EventAttribution, Explanation
from core.explain.summary import summarize
from core.views.report import (
    ATTRIBUTION_COLUMNS,
    attribution_rows,
    attributions_csv,
    html_report,
    influence_csv,
    influence_table,
    safe_cell,
)

EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror=alert(2)>'


def explanation(user: str = "u1", title: str | None = "Lamp") -> Explanation:
    formula = '=HYPERLINK("http://x")'
    events = [
        EventAttribution(0, "view", "I1", EVIL, None, "2024-01-01T00:00:00Z", None, 0.05),
        EventAttribution(1, "purchase", "I2", formula, None, "2024-01-05T00:00:00Z", None, 0.5),
        EventAttribution(2, "rate", "-3", "Tea", None, "2024-01-10T00:00:00Z", 4.0, -0.2),
    ]
    return Explanation(
        user,
        "I9",
        "fused",
        "loo",
        events,
        0.9,
        0.1,
        None,
        2.0,
        aopc=0.3,
        aopc_random=0.1,
        item_title=title,
        run="syn-run",
        deletion_curve=[0.9, 0.4, 0.2, 0.1],
        random_deletion_curve=[0.9, 0.7, 0.3, 0.1],
    )


def test_attribution_rows_one_per_event() -> None:
    rows = attribution_rows(explanation())
    assert list(rows.columns) == list(ATTRIBUTION_COLUMNS)
    assert rows["position"].tolist() == [0, 1, 2]
    assert rows["event_item"].tolist() == ["I1", "I2", "-3"]
    assert rows["attribution"].tolist() == [0.05, 0.5, -0.2]
    assert set(rows["user"]) == {"u1"} and set(rows["method"]) == {"loo"} and set(rows["target"]) == {"fused"}


def test_attributions_csv_round_trips_and_defuses_formulas() -> None:
    back = pd.read_csv(io.StringIO(attributions_csv(explanation())), dtype={"event_item": str})
    assert list(back.columns) == list(ATTRIBUTION_COLUMNS)
    assert back["title"].tolist() == [EVIL, '\'=HYPERLINK("http://x")', "Tea"]
    assert back["event_item"].tolist() == ["I1", "I2", "-3"]  # a plain number stays as it is
    assert back["value"].isna().tolist() == [True, True, False]
    assert back["attribution"].tolist() == pytest.approx([0.05, 0.5, -0.2])


@pytest.mark.parametrize(
    ("cell", "out"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("-3", "-3"),
        ("+1.5e3", "+1.5e3"),
        ("plain", "plain"),
        (3, 3),
        (None, None),
    ],
)
def test_safe_cell(cell: object, out: object) -> None:
    assert safe_cell(cell) == out


REPORT = {
    "run": "syn-run",
    "method": "loo",
    "target": "engagement",
    "users": 20,
    "k": 10,
    "seed": 0,
    "protocol": "full ranking, earlier items kept",
    "per_behavior_share": {"view": 0.6, "purchase": 0.4},
    "per_event": {"view": 0.01, "purchase": 0.05},
    "per_behavior_signed": {"view": -0.002, "purchase": 0.03},
    "intervals": {
        "per_behavior_share": {"view": [0.5, 0.7], "purchase": [0.3, 0.45]},
        "per_event": {"view": [0.008, 0.012], "purchase": [0.04, 0.06]},
        "per_behavior_signed": {"view": [-0.004, 0.001], "purchase": [0.02, 0.04]},
    },
    "events": {"view": 120, "purchase": 30},
    "events_settled": {"view": 100, "purchase": 25},
    "by_time_gap": {
        "<1h": {"share": 0.7, "per_event": 0.2, "signed": 0.1, "rows": 90},
        ">7d": {"share": 0.3, "per_event": 0.1, "signed": -0.1, "rows": 60},
    },
    "by_category": {"=evil": {"share": 1.0, "per_event": 0.1, "signed": 0.0, "rows": 150}},
    "ablation": None,
}
ABLATION = {
    "protocol": "full ranking",
    "split": "test",
    "users": 20,
    "baseline": {"HR@10": 0.2},
    "deltas": {
        "view": {"HR@10": -0.05, "NDCG@10": -0.02, "RMSE": 0.01, "removed_events": 80},
        "purchase": {"HR@10": 0.0, "NDCG@10": -0.01, "RMSE": 0.0, "removed_events": 20},
    },
}


def test_influence_table_has_a_row_per_behavior_gap_and_category() -> None:
    table = influence_table(REPORT, ABLATION)
    assert table[["section", "group"]].values.tolist() == [
        ["behavior", "view"],
        ["behavior", "purchase"],
        ["time_gap", "<1h"],
        ["time_gap", ">7d"],
        ["category", "=evil"],
    ]
    assert list(table.columns[:7]) == ["run", "method", "target", "users", "k", "seed", "protocol"]
    view = table.iloc[0]
    assert (view["share"], view["share_low"], view["share_high"]) == (0.6, 0.5, 0.7)
    assert (view["rows"], view["rows_settled"]) == (120, 100)
    assert (view["ablation_delta_HR@10"], view["ablation_removed_events"]) == (-0.05, 80)
    assert table.iloc[2]["rows"] == 90 and pd.isna(table.iloc[2]["share_low"])


def test_influence_csv_without_ablation_and_with_defused_labels() -> None:
    back = pd.read_csv(io.StringIO(influence_csv(REPORT)))
    assert "ablation_delta_HR@10" not in back.columns
    assert back["group"].tolist()[-1] == "'=evil"
    assert back.loc[back["section"] == "behavior", "share"].sum() == pytest.approx(1.0)


def report_text(**kwargs: object) -> str:
    top = pd.DataFrame({"rank": [1, 2], "item_id": ["I9", "I8"], "title": [EVIL, "Pen"], "score": [0.9, 0.5]})
    cf = {
        "message": f"removing these 1 event(s) drops item {EVIL}",
        "found": True,
        "events": [
            {
                "position": 1,
                "time": "2024-01-05T00:00:00Z",
                "behavior": "purchase",
                "item": "I2",
                "title": EVIL_ATTR,
                "value": None,
                "attribution": 0.7,
            }
        ],
    }
    return html_report(
        explanation(user=EVIL, title=EVIL_ATTR),
        top=top,
        counterfactual=cf,
        tokens=(["red", EVIL], [0.5, -0.1]),
        **kwargs,
    )


def test_html_report_escapes_every_user_text() -> None:
    text = report_text()
    assert EVIL not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert html.escape(EVIL_ATTR) in text
    assert len(re.findall(r"<script\b", text)) == len(re.findall(r"</script>", text))  # no stray tags


def test_html_report_is_self_contained() -> None:
    text = report_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    assert "<script src=http" not in text and "<link" not in text
    assert get_plotlyjs()[:2000] in text and text.count(get_plotlyjs()[:2000]) == 1  # the bundle, inlined once
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for div in ("bl-timeline", "bl-behaviors", "bl-deletion"):
        assert f'id="{div}"' in text


def test_html_report_holds_every_section() -> None:
    exp = explanation()
    text = html_report(exp, top=pd.DataFrame({"item_id": ["I9"]}), counterfactual=None)
    assert html.escape(summarize(exp)) in text
    for heading in (
        "Summary",
        "Top recommendations",
        "Events over time",
        "Per behavior",
        "Counterfactual set",
        "Faithfulness",
        "About this explanation",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "<h2>Text tokens</h2>" not in text  # none given
    assert "Not computed." in text
    full = report_text(summary="Custom summary.")
    assert "<h2>Text tokens</h2>" in full and "Custom summary." in full
    assert "by attribution" in full and "0.3" in full  # AOPC vs random
