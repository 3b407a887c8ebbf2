"""The Influence page: per-behavior influence with intervals, by time gap and category, the ablation table.

One tiny run (30 users, 30 items, one epoch, a random 1-layer BERT as the text encoder) is
trained once into a module workspace; every test opens the page on it through app.py, as a
browser would, with Streamlit's caches cleared around it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from page_support import charts, frame, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

PAGE = "pages/influence.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> tuple[Path, str, set[str]]:
    """(workspace folder, run ID, the item categories) of the module's tiny run."""
    run = tiny_run(tmp_path_factory.mktemp("influence-page"))
    return run.root, run.run_id, {str(c) for c in run.data.items["category"]}


@pytest.fixture()
def page(open_app, trained: tuple[Path, str, set[str]]) -> AppTest:
    """The Influence page on the module's tiny run, opened through app.py without an error."""
    root, run_id, _ = trained
    return no_errors(open_app(root, run_id, PAGE))


def compute(at: AppTest, method: str = "loo", users: int = 12, k: int = 5) -> AppTest:
    at.radio(key="influence_method").set_value(method)
    at.number_input(key="influence_users").set_value(users)
    at.number_input(key="influence_k").set_value(k)
    next(b for b in at.button if b.label == "Compute influence").click()
    return no_errors(at.run())


def test_before_computing_the_page_offers_the_settings(page: AppTest) -> None:
    assert page.radio(key="influence_method").value == "loo"  # leave-one-out is the default
    assert page.radio(key="influence_method").options == [
        "leave-one-out (attributions)",
        "behavior swap (interventional)",
        "Integrated Gradients (attributions)",
    ]
    assert any("press Compute influence" in unescape(i.value) for i in page.info)
    assert not page.get("plotly_chart")


def test_computed_influence_shows_bars_with_intervals_groups_and_ablation(
    page: AppTest, trained: tuple[Path, str, set[str]]
) -> None:
    at = compute(page)
    specs = charts(at)
    assert set(specs) == {
        "Influence by behavior: share of total |attribution|",
        "Influence by time gap",
        "Influence by category",
    }
    bars = specs["Influence by behavior: share of total |attribution|"]["data"][0]
    assert sum(bars["y"]) == pytest.approx(1.0)  # shares of the total
    assert len(bars["error_y"]["array"]) == len(bars["y"]) and bars["error_y"]["symmetric"] is False
    table = frame(at, "95% low")
    assert (table["95% low"] <= table["share of total |attribution|"] + 1e-12).all()
    assert set(specs["Influence by category"]["data"][0]["x"]) <= trained[2] | {"(none)"}
    assert set(specs["Influence by time gap"]["data"][0]["x"]) <= {"&lt;1h", "1h-1d", "1-7d", "&gt;7d"}
    assert any(
        unescape(c.value).startswith("Shown: each behavior's share of the total |attribution|") for c in at.caption
    )
    assert any("12 users, their top-5 items, method leave-one-out" in unescape(c.value) for c in at.caption)
    ablation = frame(at, "removed_events")
    assert set(ablation["behavior"]) == set(table["behavior"]) and (ablation["removed_events"] > 0).all()
    weights = frame(at, "14 d")  # the model's own weights: behavior memory, one column per age
    assert set(weights["behavior"]) == set(table["behavior"])
    assert (weights[["10 min", "12 h", "3 d", "14 d"]] > 0).all().all()
    assert any(s.value == "The model's own weights" for s in at.subheader)
    assert {"HR@10", "NDCG@10", "RMSE"} <= set(ablation.columns)  # deltas
    baseline = r"With every behavior: HR@10 [\d.]+, NDCG@10 [\d.]+, RMSE [\d.]+\."
    assert any(re.fullmatch(baseline, unescape(c.value).replace("\u2060", "")) for c in at.caption)  # no autolink
    assert any(
        "Behavior ablation: every event of one behavior is masked" in unescape(c.value)
        and "full ranking" in unescape(c.value)
        for c in at.caption
    )  # the protocol is labelled
    assert at.session_state["influence"] == {
        "run": trained[1],
        "settings": {"users": 12, "method": "loo", "k": 5, "seed": 0},
    }


def test_the_estimand_switch_changes_the_bars(page: AppTest) -> None:
    at = compute(page)
    share = charts(at)["Influence by behavior: share of total |attribution|"]["data"][0]["y"]
    at.radio(key="influence_stat").set_value("signed").run()
    assert not at.exception and not at.error
    specs = charts(at)
    signed = specs["Influence by behavior: signed mean attribution of one event"]["data"][0]["y"]
    assert signed != share
    assert specs["Influence by time gap"]["layout"]["yaxis"]["title"]["text"] == (
        "signed mean attribution of one event"
    )
    assert any(
        unescape(c.value).startswith("Shown: the signed mean attribution of ONE settled event") for c in at.caption
    )


def test_swap_method_is_labelled_interventional(page: AppTest) -> None:
    at = compute(page, method="swap", users=8)
    at.radio(key="influence_stat").set_value("per_event").run()
    assert not at.exception and not at.error
    assert any("interventional" in unescape(c.value) for c in at.caption)
    assert "Influence by behavior: mean |attribution| of one event" in charts(at)
