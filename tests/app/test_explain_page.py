"""The Explain page: user -> top-K -> item -> timeline by attribution, summary, counterfactual, faithfulness.

One tiny run (30 users, 30 items, one epoch, a random 1-layer BERT as the text encoder) is
trained once into a module workspace (user IDs pseudonymized, as ingest does by default);
every test opens the page on it through app.py, as a browser would, with Streamlit's
caches cleared around it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from page_support import DATASET, charts, frame, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.store.workspace import Workspace

PAGE = "pages/explain.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> tuple[Path, str, str]:
    """(workspace folder, run ID, an original user ID) of the module's tiny run."""
    run = tiny_run(tmp_path_factory.mktemp("explain-page"))
    return run.root, run.run_id, run.user


@pytest.fixture()
def page(open_app, trained: tuple[Path, str, str]) -> AppTest:
    """The Explain page on the module's tiny run, opened through app.py without an error."""
    return no_errors(open_app(*trained[:2], PAGE))


def timeline(at: AppTest) -> dict:
    specs = [s for title, s in charts(at).items() if title.startswith("Event timeline")]
    assert len(specs) == 1, list(charts(at))
    return specs[0]


def summary(at: AppTest) -> str:
    texts = [unescape(i.value) for i in at.info if "because" in unescape(i.value) or "history" in unescape(i.value)]
    assert texts, [i.value for i in at.info]
    return texts[0]


def test_page_shows_top_k_timeline_summary_and_faithfulness(page: AppTest, trained: tuple[Path, str, str]) -> None:
    top = frame(page, "rank")
    assert len(top) == 10 and list(top["rank"]) == list(range(1, 11))
    assert {"item_id", "title", "score", "engagement", "rating"} <= set(top.columns)
    assert top["score"].is_monotonic_decreasing
    user = page.session_state["explained"]["user"]
    assert page.selectbox(key=f"explain_item_{user}").value == top["item_id"][0]  # the top item by default
    spec = timeline(page)
    events = frame(page, "attribution")
    assert len(spec["data"][0]["x"]) == len(events) > 0
    assert spec["data"][0]["marker"]["color"] == pytest.approx(events["attribution"].tolist())
    assert set(spec["data"][0]["y"]) == set(events["behavior"])
    assert "Deletion curve: attribution order vs random" in charts(page)
    assert {m.label for m in page.metric} >= {"AOPC (this explanation)", "AOPC (random order)"}
    text = summary(page)
    assert text.startswith("“") and " is recommended" in text  # the default target: the fused ranking score
    assert "Times count back from this history's latest event" in text
    assert any(h.value == "Counterfactual set" for h in page.subheader)
    request = page.session_state["explained"]
    assert request["run"] == trained[1] and request["method"] == "ig" and request["target"] == "fused"
    assert request["item"] == top["item_id"][0] and request["k"] == 10


def test_switching_the_method_changes_the_chart(page: AppTest) -> None:
    before = timeline(page)
    page.radio(key="explain_method").set_value("attention").run()
    assert not page.exception and not page.error
    after = timeline(page)
    assert after["layout"]["title"]["text"] == "Event timeline: attention weight per event (heuristic)"
    assert after["data"][0]["marker"]["color"] != before["data"][0]["marker"]["color"]
    assert min(after["data"][0]["marker"]["color"]) >= 0  # weights, not signed attributions
    assert any("heuristic" in unescape(w.value) for w in page.warning)
    assert "This is a heuristic" in summary(page)
    assert page.session_state["explained"]["method"] == "attention"


def test_target_and_item_choices_reach_the_explanation(page: AppTest) -> None:
    top = frame(page, "rank")
    user = page.session_state["explained"]["user"]
    page.selectbox(key=f"explain_item_{user}").set_value(top["item_id"][1])
    page.radio(key="explain_target").set_value("rating").run()
    assert not page.exception and not page.error
    assert summary(page).startswith("The model predicts a rating of ")
    title = str(top["title"][1])
    assert f"“{title[:59]}" in summary(page)
    request = page.session_state["explained"]
    assert (request["item"], request["target"]) == (top["item_id"][1], "rating")
    page.selectbox(key=f"explain_item_{user}").set_value(top["item_id"][4]).run()
    page.number_input(key="explain_k").set_value(3).run()  # the chosen item leaves the list
    assert not page.exception and not page.error
    assert len(frame(page, "rank")) == 3
    assert page.session_state["explained"]["item"] in top["item_id"][:3].tolist()


def test_an_original_user_id_can_be_typed(open_app, trained: tuple[Path, str, str]) -> None:
    root, run_id, original = trained
    at = open_app(root, run_id, PAGE, explain_user=original)
    assert not at.exception and not at.error, [e.value for e in at.error]
    stored = Workspace(root).resolve_user(DATASET, original)
    assert stored != original  # the dataset is pseudonymized
    assert any(unescape(c.value) == f"Original user ID {original} is stored as {stored}." for c in at.caption)
    assert at.session_state["explained"]["user"] == stored
    assert at.session_state["explained"]["label"] == original
    at = open_app(root, run_id, PAGE, explain_user="nobody-like-this")  # AppTest cannot type into it
    assert not at.exception
    assert any("'nobody-like-this' has no events" in unescape(e.value) for e in at.error)


def test_token_highlights_on_request(page: AppTest) -> None:
    assert not page.get("html")
    page.toggle(key="explain_tokens").set_value(True).run()
    assert not page.exception and not page.error, [e.value for e in page.error]
    snippets = [h.proto.body for h in page.get("html")]
    assert len(snippets) == 1 and snippets[0].count("<span") >= 1
    assert page.session_state["explained"]["tokens"] is True


def test_without_a_run_the_page_says_so(open_app, tmp_path: Path) -> None:
    at = open_app(tmp_path / "empty", None, PAGE)
    assert not at.exception and not at.error
    assert any("No trained run" in unescape(i.value) for i in at.info)
