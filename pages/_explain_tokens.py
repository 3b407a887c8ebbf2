"""The Explain page's text tokens: the candidate item's words, then the own texts (a review, a comment, a query,
a tag) of the history events the analyst picks, each word shaded by its token attribution.

Widgets only: the attributions are ``core.runs.explain.token_attributions_run`` (kept by the run's handle, one
event per call so that picking another event computes only that one), which explained events have a text of their
own is ``core.explain.tokens.own_texts``, the highlights ``core.views.explain_charts.token_html`` (escaped). Titles
and texts are user data: shown as widget options, through ``token_html`` or through ``plain``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.errors import BehaviorLensError
from core.explain.tokens import TokenAttribution, own_texts
from core.runs.explain import token_attributions_run
from core.runs.run import Run
from core.views import explain_charts as charts
from pages._shared import plain, show_error

TOKENS_KEY, EVENT_TEXTS_KEY = "explain_tokens", "explain_event_texts"
DEFAULT_EVENT_TEXTS = 1  # own texts highlighted without asking: the most influential events' (each runs the encoder)
SNIPPET = 40  # characters of an event's text in its label


def tokens_section(run: Run, user: str, item: str, target: str, weights: dict[str, float] | None, exp: Any) -> bool:
    """Token highlights of the item's text, then of the picked events' own texts, on request; whether shown."""
    st.subheader("Text tokens")
    if not st.toggle("Attribute the item text's tokens (runs the text encoder)", key=TOKENS_KEY):
        return False
    try:  # e.g. the run's encoder files are gone: say so here, keep the rest of the page
        with st.spinner("Attributing the item text's tokens (runs the text encoder)…"):
            result = token_attributions_run(run, user, item, target, weights, stored=True)[0]
        texts = own_texts(run.recommender(), user)
    except BehaviorLensError as exc:
        show_error(exc)
        return False
    if result.words:
        _highlight(result)
        st.caption(
            plain(
                f"Layer Integrated Gradients on the encoder's word embeddings, {target} score; blue raises, "
                f"red lowers; completeness delta {result.completeness_delta:.3g}."
            )
        )
    else:
        st.caption(plain(f"Item {item} has no text (its catalogue row holds none), so it has no words to attribute."))
    if run.recommender().model_.cfg.use_event_text:
        event_texts_section(run, (user, item, target), weights, exp, texts)
    return True


def event_texts_section(
    run: Run, request: tuple[str, str, str], weights: dict[str, float] | None, exp: Any, texts: dict[int, str]
) -> None:
    """A picker of the explained events with a text of their own (most influential first), then their highlights."""
    user, item, target = request
    if not texts:
        st.caption("None of the explained events carries a text of its own (a review, a comment, a query, a tag).")
        return
    ranked = sorted(texts, key=lambda p: (-abs(exp.events[p].attribution), -p))

    def label(p: int) -> str:
        e, text = exp.events[p], texts[p]
        start = text if len(text) <= SNIPPET else text[:SNIPPET].rstrip() + "…"
        return f"{e.behavior} of {e.title or e.item}, {e.time[:16].replace('T', ' ')}: “{start}”"

    chosen = st.multiselect(
        "Also highlight the own text of these history events (most influential first)",
        ranked,
        default=ranked[:DEFAULT_EVENT_TEXTS],
        format_func=label,
        key=f"{EVENT_TEXTS_KEY}_{run.id}_{user}_{item}",
        help="Each event's review, comment, query or tag, its words shaded by how they move the same score "
        "(the event's own text only; the rest of the history as it is).",
    )
    for p in chosen:
        e = exp.events[p]
        try:
            with st.spinner("Attributing the event text's tokens (runs the text encoder)…"):
                found = token_attributions_run(run, user, item, target, weights, stored=True, event_text_positions=[p])
        except BehaviorLensError as exc:
            show_error(exc)
            continue
        own = found[-1]
        st.caption(
            plain(
                f"Own text of the {e.behavior} of {e.title or e.item} on {e.time[:16].replace('T', ' ')} "
                f"({'attention weight' if exp.heuristic else 'attribution'} {e.attribution:+.3g}): "
                f"completeness delta {own.completeness_delta:.3g}."
            )
        )
        _highlight(own)


def _highlight(result: TokenAttribution) -> None:
    st.html(charts.token_html([w for w, _ in result.words], [a for _, a in result.words]))
