"""The Explain page: user -> top-K -> item -> timeline by attribution, summary, counterfactual, faithfulness.

One tiny run (30 users, 30 items, one epoch, a random 1-layer BERT as the text encoder) is
trained once into a module workspace (user IDs pseudonymized, as ingest does by default);
every test opens the page on it through app.py, as a browser would, with Streamlit's
caches cleared around it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from page_support import DATASET, charts, frame, no_errors, unescape  # tests/app/page_support.py
from streamlit.testing.v1 import AppTest

from core.explain.tokens import own_texts
from core.runs.run import open_run
from core.runs.train import train_run
from core.store.workspace import Workspace

PAGE = "pages/explain.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, tiny_run):  # -> TinyRun (tests/conftest.py)
    """The module's tiny run (its model reads the events' own texts: the generated reviews)."""
    return tiny_run(tmp_path_factory.mktemp("explain-page"))


@pytest.fixture(scope="module")
def trained(tiny) -> tuple[Path, str, str]:
    """(workspace folder, run ID, an original user ID) of the module's tiny run."""
    return tiny.root, tiny.run_id, tiny.user


@pytest.fixture(scope="module")
def own(tiny) -> dict[str, dict[int, str]]:
    """{stored user ID: {position in the explained window: the event's own text}} under the module's run."""
    rec = open_run(tiny.ws, tiny.run_id).recommender()
    assert rec.model_.cfg.use_event_text
    return {str(u): own_texts(rec, str(u)) for u in rec.data_.users}


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
    events = sum(len(m.value) for m in event_picker(page))  # the events' own texts highlighted below it
    assert len(snippets) == 1 + events and snippets[0].count("<span") >= 1
    assert page.session_state["explained"]["tokens"] is True


def highlighted(snippet: str) -> list[str]:
    """The words of one token highlight, as the reader sees them."""
    return [html.unescape(w) for w in re.findall(r"<span[^>]*>([^<]*)</span>", snippet)]


def words_of(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def event_picker(at: AppTest) -> list:
    return [m for m in at.multiselect if str(m.key).startswith("explain_event_texts")]


def test_event_own_text_highlights(open_app, trained: tuple[Path, str, str], own: dict[str, dict[int, str]]) -> None:
    """The history's events with a text of their own are offered, most influential first; the top one is
    highlighted by default, and another picked is highlighted with its own words."""
    user = max(own, key=lambda u: len(set(own[u].values())))
    texts = own[user]
    assert len(set(texts.values())) >= 2  # the generated reviews: two different texts to tell apart
    at = no_errors(open_app(*trained[:2], PAGE, explain_user=user))
    assert not event_picker(at)  # nothing before the token toggle
    at.toggle(key="explain_tokens").set_value(True).run()
    no_errors(at)
    (picker,) = event_picker(at)
    attribution = frame(at, "attribution")["attribution"]  # row p: the event at position p
    ranked = sorted(texts, key=lambda p: (-abs(attribution[p]), -p))
    assert len(picker.options) == len(texts)
    assert all(f"“{texts[p][:20]}" in option for p, option in zip(ranked, picker.options))  # most influential first
    assert picker.value == [ranked[0]]  # the most influential event with a text, by default
    snippets = [h.proto.body for h in at.get("html")]
    assert len(snippets) == 2  # the candidate's text, then the event's own text
    shown = highlighted(snippets[1])
    assert shown and words_of(" ".join(shown)) == words_of(texts[ranked[0]])
    assert any("Own text of the" in unescape(c.value) and "completeness delta" in unescape(c.value) for c in at.caption)
    other = next(p for p in ranked if texts[p] != texts[ranked[0]])
    picker.set_value([other]).run()
    no_errors(at)
    snippets = [h.proto.body for h in at.get("html")]
    assert len(snippets) == 2
    assert words_of(" ".join(highlighted(snippets[1]))) == words_of(texts[other])
    picker.set_value([]).run()
    assert len(at.get("html")) == 1 and not at.exception


def test_no_event_text_shows_nothing_extra(open_app, tiny, own: dict[str, dict[int, str]]) -> None:
    """A history without texts of its own: one caption says so; a run that does not read them: nothing extra."""
    quiet = next(u for u, texts in own.items() if not texts)
    at = no_errors(open_app(tiny.root, tiny.run_id, PAGE, explain_user=quiet))
    at.toggle(key="explain_tokens").set_value(True).run()
    no_errors(at)
    assert not event_picker(at) and len(at.get("html")) == 1
    assert any("carries a text of its own" in unescape(c.value) for c in at.caption)
    settings = {**tiny.settings, "model": {**tiny.settings["model"], "use_event_text": False}}
    blind = train_run(tiny.ws, tiny.dataset, settings)
    talker = next(u for u, texts in own.items() if texts)
    at = no_errors(open_app(tiny.root, blind, PAGE, explain_user=talker))
    at.toggle(key="explain_tokens").set_value(True).run()
    no_errors(at)
    assert at.session_state["explained"]["run"] == blind
    assert not event_picker(at) and len(at.get("html")) == 1
    assert not any("text of its own" in unescape(c.value) for c in at.caption)


def test_without_a_run_the_page_says_so(open_app, tmp_path: Path) -> None:
    at = open_app(tmp_path / "empty", None, PAGE)
    assert not at.exception and not at.error
    assert any("No trained run" in unescape(i.value) for i in at.info)
