"""core.explain.summary: plain-language summaries of hand-built explanations, checked word for word."""

from __future__ import annotations

import pytest

from core.explain.explanation import EventAttribution, Explanation
from core.explain.summary import relative_time, summarize

DAY, HOUR, MINUTE = 86400, 3600, 60
NOTE = "Times count back from this history's latest event (10 Jan 2024, 00:00 UTC)."


def ev(
    position: int,
    behavior: str,
    item: str,
    title: str | None,
    time: str,
    attribution: float,
    value: float | None = None,
) -> EventAttribution:
    return EventAttribution(position, behavior, item, title, None, time, value, attribution)


def explanation(
    events: list[EventAttribution],
    target: str = "fused",
    method: str = "ig",
    score: float = 0.9,
    heuristic: bool = False,
    title: str | None = "Lamp",
) -> Explanation:
    return Explanation("u1", "I9", target, method, events, score, 0.1, 0.0, 1.0, heuristic=heuristic, item_title=title)


def shop() -> list[EventAttribution]:
    """An old view, a purchase 3 days and a view 1 day before the newest event, a 5-star rating last."""
    return [
        ev(0, "view", "I1", "Red Shoes", "2024-01-01T00:00:00Z", 0.01),
        ev(1, "purchase", "I2", "Blue Bag", "2024-01-07T00:00:00Z", 0.5),
        ev(2, "view", "I3", "Coffee", "2024-01-09T00:00:00Z", 0.02),
        ev(3, "rate", "I4", "Tea", "2024-01-10T00:00:00Z", 0.3, value=5.0),
    ]


def test_main_drivers_with_times_stars_and_little_effect() -> None:
    assert summarize(explanation(shop())) == (
        "“Lamp” is recommended mainly because you purchased “Blue Bag” 3 days ago and rated “Tea” 5★ just now; "
        "your views had little effect. " + NOTE
    )


def test_a_negative_event_is_named_with_despite() -> None:
    events = shop() + [ev(4, "view", "I5", "Socks", "2024-01-08T00:00:00Z", -0.2)]
    assert summarize(explanation(events)) == (
        "“Lamp” is recommended mainly because you purchased “Blue Bag” 3 days ago and rated “Tea” 5★ just now, "
        "despite having viewed “Socks” 2 days ago. " + NOTE
    )


def test_when_every_event_lowers_the_score() -> None:
    events = [
        ev(0, "cart", "I1", "Red Shoes", "2024-01-09T12:00:00Z", -0.4),
        ev(1, "view", "I2", None, "2024-01-10T00:00:00Z", -0.1),
    ]
    assert summarize(explanation(events)) == (
        "“Lamp” is recommended despite your history: having added “Red Shoes” to your cart 12 hours ago lowered "
        "its score the most. " + NOTE
    )


def test_small_drivers_are_partly_and_repeated_events_are_grouped() -> None:
    events = [
        ev(0, "view", "I1", "Red Shoes", "2024-01-09T20:00:00Z", 0.2),
        ev(1, "view", "I1", "Red Shoes", "2024-01-09T22:00:00Z", 0.2),
        ev(2, "click", "I1", "Red Shoes", "2024-01-09T22:01:00Z", 0.1),
    ]
    events += [ev(3 + i, "favorite", f"F{i}", f"Fav {i}", "2024-01-10T00:00:00Z", 0.09) for i in range(6)]
    text = summarize(explanation(events))
    assert text.startswith(
        "“Lamp” is recommended partly because you viewed “Red Shoes” 2 times, most recently "
        "2 hours ago and clicked “Red Shoes” 1 hour ago. Times"
    )  # each favorite < 1/4 of 0.4


def test_ties_prefer_the_newer_event_and_the_text_is_deterministic() -> None:
    events = [
        ev(0, "share", "I1", "Old", "2024-01-08T00:00:00Z", 0.5),
        ev(1, "share", "I2", "New", "2024-01-10T00:00:00Z", 0.5),
    ]
    first = summarize(explanation(events))
    assert first.startswith(
        "“Lamp” is recommended mainly because you shared “New” just now and shared “Old” 2 days ago."
    )
    assert summarize(explanation(list(reversed(events)))) == first


@pytest.mark.parametrize(
    ("target", "lead"),
    [
        ("engagement", "The model expects you to engage with “Lamp” mainly because"),
        ("rating", "The model predicts a rating of 4.3 for “Lamp” mainly because"),
        ("fused", "“Lamp” is recommended mainly because"),
    ],
)
def test_the_lead_follows_the_target(target: str, lead: str) -> None:
    assert summarize(explanation(shop(), target=target, score=4.26)).startswith(lead)


def test_attention_is_said_to_be_a_heuristic() -> None:
    events = [
        ev(0, "view", "I1", "Red Shoes", "2024-01-05T00:00:00Z", 0.6),
        ev(1, "review", "I2", "Blue Bag", "2024-01-10T00:00:00Z", 0.3, value=4.5),
        ev(2, "view", "I3", "Coffee", "2024-01-10T00:00:00Z", 0.1),
    ]
    assert summarize(explanation(events, method="attention", heuristic=True)) == (
        "“Lamp” is recommended; when scoring it, the model looked most at the events where you viewed "
        "“Red Shoes” 5 days ago and reviewed “Blue Bag” 4.5★ just now. This is a heuristic: attention shows "
        "where the model looks, not what raises or lowers the score; use IG, SHAP or leave-one-out for that. " + NOTE
    )


def test_an_empty_history() -> None:
    assert summarize(explanation([])) == (
        "“Lamp” is recommended without any history to explain it: this user has no events in the model's window, "
        "so the score comes from the model alone, not from anything they did."
    )


def test_no_measurable_effect() -> None:
    events = [
        ev(0, "view", "I1", "A", "2024-01-10T00:00:00Z", 0.0),
        ev(1, "view", "I2", "B", "2024-01-10T00:00:00Z", 0.0),
    ]
    assert summarize(explanation(events)) == (
        "“Lamp” is recommended, but none of the 2 events in the history changed the score measurably."
    )


def test_custom_behaviors_missing_and_long_titles() -> None:
    events = [
        ev(0, "wishlist_add", "I1", None, "2024-01-09T00:00:00Z", 0.5),
        ev(1, "dwell", "I2", "x" * 80, "2024-01-10T00:00:00Z", 0.01),
    ]
    text = summarize(explanation(events, title=None))
    assert text.startswith(
        "“I9” is recommended mainly because you interacted with “I1” (wishlist_add) 1 day ago; "
        "your “dwell” events had little effect."
    )


def test_times_count_from_the_latest_event_not_from_today() -> None:
    events = [
        ev(0, "purchase", "I1", "Old Bag", "1999-12-29T00:00:00Z", 1.0),
        ev(1, "view", "I2", "New", "2000-01-01T00:00:00Z", 0.0),
    ]
    assert "purchased “Old Bag” 3 days ago" in summarize(explanation(events))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (59, "just now"),
        (60, "1 minute ago"),
        (3599, "59 minutes ago"),
        (HOUR, "1 hour ago"),
        (DAY - 1, "23 hours ago"),
        (DAY, "1 day ago"),
        (13 * DAY, "13 days ago"),
        (14 * DAY, "2 weeks ago"),
        (59 * DAY, "8 weeks ago"),
        (60 * DAY, "2 months ago"),
        (364 * DAY, "12 months ago"),
        (365 * DAY, "1 year ago"),
        (800 * DAY, "2 years ago"),
        (float("nan"), "just now"),
    ],
)
def test_relative_time(seconds: float, text: str) -> None:
    assert relative_time(seconds) == text
