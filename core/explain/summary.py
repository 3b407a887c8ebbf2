"""Plain-language summaries of an :class:`~core.explain.explanation.Explanation`, for stakeholders.

    "“Red Shoes” is recommended mainly because you purchased “Blue Bag” 3 days ago and
     rated “Coffee” 5★; your views had little effect."

Rules (deterministic: the same explanation always gives the same text):

- Events of the same (behavior, item) are one *group*; a group's weight is the sum of
  its events' attributions. Ties break by the newer event first.
- Drivers: the positive groups, largest first, at most ``MAX_DRIVERS``, each at least
  ``DRIVER_RATIO`` of the largest one. "mainly because" when they carry at least half
  of the positive attribution, "partly because" otherwise.
- Counter-driver: the most negative group, when its |weight| is at least ``DRIVER_RATIO``
  of the largest |weight|: "…, despite having viewed “X” 2 days ago".
- Little effect: up to two behavior types not named above whose events carry less than
  ``LITTLE_SHARE`` of Σ|attribution|, most events first.
- Attention explanations (``heuristic``) are unsigned weights: the text says where the
  model looked and that this is a heuristic, not why the item scores high.
- Times are relative to the explained history's latest event (not to today), and the
  text says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from core import schema as S
from core.explain.explanation import EventAttribution, Explanation

MAX_DRIVERS = 3
DRIVER_RATIO = 0.25  # a group is named when its weight is at least this share of the largest one
LITTLE_SHARE = 0.10  # a behavior "had little effect" below this share of Σ|attribution|
MAX_LITTLE = 2
MAX_TITLE = 60
# Past tense = past participle for every phrase: "you purchased X" and "having purchased X".
PHRASES: dict[str, str] = {
    S.VIEW: "viewed {item}",
    S.CLICK: "clicked {item}",
    S.FAVORITE: "saved {item} as a favorite",
    S.CART: "added {item} to your cart",
    S.PURCHASE: "purchased {item}",
    S.RATE: "rated {item}{stars}",
    S.REVIEW: "reviewed {item}{stars}",
    S.SHARE: "shared {item}",
}
PLURALS: dict[str, str] = {
    S.VIEW: "views",
    S.CLICK: "clicks",
    S.FAVORITE: "favorites",
    S.CART: "cart additions",
    S.PURCHASE: "purchases",
    S.RATE: "ratings",
    S.REVIEW: "reviews",
    S.SHARE: "shares",
}
_UNITS: tuple[tuple[str, float], ...] = (
    ("minute", 60.0),
    ("hour", 3600.0),
    ("day", 86400.0),
    ("week", 7 * 86400.0),
    ("month", 30 * 86400.0),
    ("year", 365 * 86400.0),
)
# The next unit from: 60 minutes, 24 hours, 14 days, 60 days (in weeks), 365 days (in months).
_NEXT_UNIT_AT = (60.0, 24.0, 14.0, 60 / 7, 365 / 30)


@dataclass(frozen=True)
class Group:
    """Events of one (behavior, item): their summed attribution, count and newest event."""

    behavior: str
    item: str
    label: str  # the item's display name, quoted
    weight: float
    count: int
    newest: EventAttribution


# -- small phrases -----------------------------------------------------------------------------
def item_label(title: str | None, item: str) -> str:
    """“Title” (cut to ``MAX_TITLE`` characters), or “item ID” without a title."""
    text = (title or "").strip() or str(item)
    if len(text) > MAX_TITLE:
        text = text[: MAX_TITLE - 1] + "…"
    return f"“{text}”"


def relative_time(seconds: float) -> str:
    """Seconds before the reference time -> "just now", "5 minutes ago", "3 days ago", "2 years ago"."""
    if not math.isfinite(seconds) or seconds < 60:
        return "just now"
    name, size = _UNITS[0]
    for (next_name, next_size), limit in zip(_UNITS[1:], _NEXT_UNIT_AT):
        if seconds / size < limit:
            break
        name, size = next_name, next_size
    n = max(1, int(seconds // size))
    return f"{n} {name}{'' if n == 1 else 's'} ago"


def _parse(time: str) -> datetime | None:
    try:
        return datetime.fromisoformat(time.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def reference_time(exp: Explanation) -> datetime | None:
    """The time of the explained history's latest event (the reference of every "ago"), if any."""
    times = [t for t in (_parse(e.time) for e in exp.events) if t is not None]
    return max(times) if times else None


def _stars(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f" {value:.0f}★" if float(value).is_integer() else f" {value:.1f}★"


def action(group: Group, reference: datetime | None) -> str:
    """ "purchased “X” 3 days ago", "viewed “X” 4 times, most recently 2 hours ago" (past participle too)."""
    stars = _stars(group.newest.value) if group.behavior in S.RATING_BEHAVIORS else ""
    template = PHRASES.get(group.behavior, "interacted with {item} (" + group.behavior + ")")
    text = template.format(item=group.label, stars=stars)
    when = _parse(group.newest.time)
    ago = relative_time((reference - when).total_seconds()) if when is not None and reference is not None else ""
    if group.count > 1:
        return f"{text} {group.count} times" + (f", most recently {ago}" if ago else "")
    return f"{text} {ago}".rstrip()


def plural(behavior: str) -> str:
    """ "views", "cart additions"; custom behaviors as “name” events."""
    return PLURALS.get(behavior, f"“{behavior}” events")


def join(parts: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -- grouping and selection --------------------------------------------------------------------
def groups_of(exp: Explanation) -> list[Group]:
    """Events grouped by (behavior, item), in order of first appearance."""
    found: dict[tuple[str, str], list[EventAttribution]] = {}
    for e in exp.events:
        found.setdefault((e.behavior, e.item), []).append(e)
    out = []
    for (behavior, item), events in found.items():
        newest = max(events, key=lambda e: e.position)
        weight = float(sum(e.attribution for e in events if math.isfinite(e.attribution)))
        out.append(Group(behavior, item, item_label(newest.title, item), weight, len(events), newest))
    return out


def _ranked(groups: list[Group], sign: float) -> list[Group]:
    """Groups with weight of ``sign``, largest |weight| first, ties to the newer event."""
    chosen = [g for g in groups if g.weight * sign > 0]
    return sorted(chosen, key=lambda g: (-abs(g.weight), -g.newest.position))


def drivers(groups: list[Group], scale: float) -> list[Group]:
    """The named positive groups (see the module doc)."""
    ranked = _ranked(groups, 1.0)
    return [g for g in ranked[:MAX_DRIVERS] if g.weight >= DRIVER_RATIO * max(scale, ranked[0].weight)]


def little_effect(exp: Explanation, named: set[str]) -> list[str]:
    """Behavior types (not in ``named``) below ``LITTLE_SHARE`` of Σ|attribution|, most events first."""
    total = sum(abs(e.attribution) for e in exp.events if math.isfinite(e.attribution))
    mass: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in exp.events:
        mass[e.behavior] = mass.get(e.behavior, 0.0) + (abs(e.attribution) if math.isfinite(e.attribution) else 0.0)
        count[e.behavior] = count.get(e.behavior, 0) + 1
    low = [b for b in mass if b not in named and total > 0 and mass[b] < LITTLE_SHARE * total]
    return sorted(low, key=lambda b: (-count[b], b))[:MAX_LITTLE]


# -- the summary ---------------------------------------------------------------------------------
def lead(exp: Explanation) -> str:
    """The subject of the sentence, by target."""
    item = item_label(exp.item_title, exp.item)
    if exp.target == "rating":
        return f"The model predicts a rating of {exp.score:.1f} for {item}"
    if exp.target == "engagement":
        return f"The model expects you to engage with {item}"
    return f"{item} is recommended"


def reference_note(exp: Explanation) -> str:
    """The sentence that says what "ago" counts from."""
    ref = reference_time(exp)
    when = f" ({ref:%d %b %Y, %H:%M} UTC)" if ref is not None else ""
    return f"Times count back from this history's latest event{when}."


def summarize(exp: Explanation) -> str:
    """A short plain-language summary of ``exp`` (see the module doc for the rules)."""
    if not exp.events:
        return (
            f"{lead(exp)} without any history to explain it: this user has no events in the model's window, "
            f"so the score comes from the model alone, not from anything they did."
        )
    if exp.heuristic:
        return _heuristic(exp)
    groups = groups_of(exp)
    scale = max((abs(g.weight) for g in groups), default=0.0)
    if scale <= 0:
        return f"{lead(exp)}, but none of the {len(exp.events)} events in the history changed the score measurably."
    ref = reference_time(exp)
    pos = drivers(groups, scale)
    neg = [g for g in _ranked(groups, -1.0)[:1] if abs(g.weight) >= DRIVER_RATIO * scale]
    if pos:
        positive = sum(g.weight for g in groups if g.weight > 0)
        how = "mainly" if sum(g.weight for g in pos) >= 0.5 * positive else "partly"
        text = f"{lead(exp)} {how} because you {join([action(g, ref) for g in pos])}"
        if neg:
            text += f", despite having {action(neg[0], ref)}"
    else:  # every event lowered the score: the largest |weight| is negative, so neg is not empty
        text = f"{lead(exp)} despite your history: having {action(neg[0], ref)} lowered its score the most"
    quiet = little_effect(exp, {g.behavior for g in pos + neg})
    if quiet:
        text += f"; your {join([plural(b) for b in quiet])} had little effect"
    return f"{text}. {reference_note(exp)}"


def _heuristic(exp: Explanation) -> str:
    """Attention weights: where the model looked, said to be a heuristic."""
    groups = groups_of(exp)
    top = _ranked(groups, 1.0)
    ref = reference_time(exp)
    note = (
        "This is a heuristic: attention shows where the model looks, not what raises or lowers the score; "
        "use IG, SHAP or leave-one-out for that."
    )
    if not top:
        return f"{lead(exp)}. The attention weights single out no event. {note}"
    named = [g for g in top[:MAX_DRIVERS] if g.weight >= DRIVER_RATIO * top[0].weight]
    return (
        f"{lead(exp)}; when scoring it, the model looked most at the events where you "
        f"{join([action(g, ref) for g in named])}. {note} {reference_note(exp)}"
    )
