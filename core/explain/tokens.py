"""Text-token attributions: LayerIntegratedGradients (Captum) on the text encoder's word embeddings.

The run's encoder runs live on an item's text (prompt + text -> tokenize -> encoder -> the model
folder's pooling -> L2 norm, as :class:`core.model.encoder.TextEncoder`; it must reproduce the
stored vector, else an ArtifactError says the text or encoder changed) and its output replaces
the item's row of ``ItemEncoder.text`` on a private copy of the model: ``candidate``: where the explained
item is scored (history tokens keep the stored vectors); ``event``: one history event's
token only; ``event_text``: one history event's own text (a review, a query, a tag: its row of
``EventText.table``, that event's token only). The target is the explanation's (engagement, rating or
fused; ``subject_for``).
Baseline: every non-special token's word embedding swapped for the pad token's ([PAD]; a
decoder-only tokenizer's end-of-sequence token) with [CLS]/[SEP], the document prompt,
positions and attention kept; Gauss-Legendre nodes; Σ attributions = f(text) − f(baseline)
up to ``completeness_delta``. Pieces are kept (``tokens``) and summed into ``words``. The
encoder runs on the run's device, the recommender copy on CPU like every attribution method.
The encoder and the Layer Integrated Gradients themselves are :mod:`core.explain.text_ig`.
Which explained events have a text of their own: :func:`own_texts`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core._checks import check_whole, finite_or_none
from core.data.batches import Batch
from core.errors import DataError, NotFittedError
from core.explain.explanation import TARGET_UNITS
from core.explain.scorer import HistoryScorer, user_history
from core.explain.subject import Labels, Subject, Titles, history_scorer, item_index, subject_for, user_row
from core.explain.text_ig import TOLERANCE, LiveEncoder, ScoreFn, attribute_text, check_embedding, live_encoder
from core.model.layers import EventText
from core.model.network import BehaviorModel
from core.model.recommender import Recommender

CANDIDATE, EVENT, EVENT_TEXT = "candidate", "event", "event_text"
DEFAULT_STEPS = 32


@dataclass
class TokenAttribution:
    """Per-token attributions of one item text to one (user, item, target) score."""

    source: str  # "candidate", "event" (an event's item text) or "event_text" (an event's own text)
    position: int | None  # the event's position in the explained window (0 = oldest); None for the candidate
    item: str  # original ID of the item whose text is attributed (event_text: the event's item)
    text: str
    tokens: list[str]  # word pieces, special tokens included
    attributions: list[float]  # [len(tokens)] in the target's units; 0 for special tokens
    words: list[tuple[str, float]]  # pieces summed into words, special tokens left out
    score: float  # target with the live text embedding
    baseline_score: float  # target with every non-special token's word embedding swapped for the pad token's
    completeness_delta: float  # Σ attributions − (score − baseline_score)
    runtime_ms: float
    target: str = "fused"
    units: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_delta(self) -> float | None:
        """|completeness_delta| / |score − baseline_score|; None without a gap."""
        gap = abs(self.score - self.baseline_score)
        return None if gap == 0 else abs(self.completeness_delta) / gap

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict (non-finite floats -> None); ``words`` as [word, attribution] pairs."""
        return finite_or_none({**asdict(self), "relative_delta": self.relative_delta})


def candidate_score(subject: Subject, model: BehaviorModel, item: int) -> ScoreFn:
    """Text embeddings [S, T] of the candidate -> target [S]: the history is scored once, the item S times."""
    states: dict[str, torch.Tensor] = {}

    def grab(task_e: torch.Tensor, task_r: torch.Tensor) -> torch.Tensor:
        states["e"], states["r"] = task_e.detach(), task_r.detach()
        return task_e[:, 0]

    scorer = history_scorer(subject)
    with torch.no_grad():
        HistoryScorer(model, scorer.batch, grab).score_tokens(scorer.tokens())
    target = scorer.target

    def score(emb: torch.Tensor) -> torch.Tensor:
        return torch.cat([_with_row(model, item, row, lambda: target(states["e"], states["r"])) for row in emb])

    return score


def event_score(subject: Subject, model: BehaviorModel, item: int, position: int) -> ScoreFn:
    """Text embeddings [S, T] of the event's item -> target [S], only the event at ``position`` changed."""
    scorer = history_scorer(subject)
    base = scorer.tokens()  # [1, n, D]
    at = torch.arange(base.shape[1]) == position  # [n]

    def score(emb: torch.Tensor) -> torch.Tensor:
        rows = [_with_row(model, item, row, lambda: model.tokens(scorer.batch)[0, position]) for row in emb]
        tokens = torch.where(at[None, :, None], torch.stack(rows)[:, None, :], base)  # [S, n, D]
        return scorer.score_tokens(tokens)

    return score


def event_text_score(subject: Subject, model: BehaviorModel, text_row: int, position: int) -> ScoreFn:
    """Text embeddings [S, T] of the event's own text -> target [S], only the event at ``position`` changed."""
    scorer = history_scorer(subject)
    base, part = scorer.tokens(), _event_text(model)
    at = torch.arange(base.shape[1]) == position  # [n]

    def token(row: torch.Tensor) -> torch.Tensor:
        stored = part.table
        part.table = stored.index_put((torch.tensor([text_row]),), row[None].to(stored.dtype))
        try:
            return model.tokens(scorer.batch)[0, position]
        finally:
            part.table = stored

    def score(emb: torch.Tensor) -> torch.Tensor:
        tokens = torch.where(at[None, :, None], torch.stack([token(row) for row in emb])[:, None, :], base)
        return scorer.score_tokens(tokens)

    return score


def _event_text(model: BehaviorModel) -> EventText:
    if model.events.text is None:
        raise DataError("this run does not read the events' own text (model setting use_event_text is off)")
    return model.events.text


def _with_row(model: BehaviorModel, item: int, row: torch.Tensor, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()`` with item ``item``'s text vector in the (private) model's text table replaced by ``row`` [T]
    (differentiable): a row of its own (items with the same text share one)."""
    text, text_of = model.items.text, model.items.text_of
    model.items.text = torch.cat([text, row[None].to(text.dtype)])
    model.items.text_of = text_of.index_put((torch.tensor([item]),), torch.tensor(text.shape[0]))
    try:
        return fn()
    finally:
        model.items.text, model.items.text_of = text, text_of


def token_attributions(
    rec: Recommender,
    user: str,
    item: str,
    target: str = "fused",
    *,
    weights: Mapping[str, float] | None = None,
    event_positions: list[int] | None = None,
    steps: int = DEFAULT_STEPS,
    tolerance: float | None = TOLERANCE,
    titles: Titles | None = None,
    event_text_positions: list[int] | None = None,
) -> list[TokenAttribution]:
    """Token attributions of the candidate ``item``'s text (first), then of the item text of each event in
    ``event_positions``, then of the own text of each event in ``event_text_positions`` (a review, a query...).

    ``user``: stored user ID; ``item``: original item ID; ``titles``: {item ID: (title, item
    text)} with the texts the run was trained on (:func:`titles_of` of the dataset's items).
    """
    check_whole("token attribution steps", steps, 2)
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise DataError(f"token attribution tolerance {tolerance!r}: expected a positive number or None")
    if titles is None:
        raise DataError(
            "token attributions need the item texts the run was trained on: pass "
            "titles=titles_of(workspace.items(dataset)) or use core.runs.explain.token_attributions_run"
        )
    if not hasattr(rec, "model_"):
        raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load() first")
    twin = copy.copy(rec)
    twin.model_ = copy.deepcopy(rec.model_).cpu().eval()  # private copy: its text table is swapped row by row
    subject = subject_for(twin, user, item, target, weights=weights, labels=Labels(titles))
    jobs = _texts(twin, subject, event_positions or []) + _event_texts(twin, subject, event_text_positions or [])
    live = live_encoder(rec)
    return [_one(live, subject, twin.model_, job, titles, (steps, tolerance), twin.data_.texts) for job in jobs]


def _texts(rec: Recommender, subject: Subject, positions: list[int]) -> list[tuple[str, int | None, str, int]]:
    """(source, position, item ID, item index) of the candidate, then of each event position."""
    n = len(subject.events)
    out: list[tuple[str, int | None, str, int]] = [(CANDIDATE, None, subject.item, item_index(rec, subject.item))]
    for p in positions:
        check_whole("event position", p, 0, n - 1, hint=f"the explained window has {n} events, 0 = oldest")
        out.append((EVENT, p, subject.events[p]["item"], item_index(rec, subject.events[p]["item"])))
    return out


def _event_texts(rec: Recommender, subject: Subject, positions: list[int]) -> list[tuple[str, int | None, str, int]]:
    """(event_text, position, item ID, row of the event's text) of each event position; DataError for an event
    without a text of its own."""
    n, rows = len(subject.events), _text_rows(history_scorer(subject).batch)
    out: list[tuple[str, int | None, str, int]] = []
    for p in positions:
        check_whole("event position", p, 0, n - 1, hint=f"the explained window has {n} events, 0 = oldest")
        row = rows[p]
        if row == 0:
            raise DataError(f"the event at position {p} has no text of its own (a review, a comment, a query, a tag)")
        _event_text(rec.model_)
        out.append((EVENT_TEXT, p, subject.events[p]["item"], row))
    return out


def own_texts(rec: Recommender, user: str) -> dict[int, str]:
    """{position in the explained window (0 = oldest): the event's own text} of the events of stored ``user`` that
    have a text of their own (what ``event_text_positions`` accepts); empty when the model does not read them."""
    if not hasattr(rec, "model_"):
        raise NotFittedError("this Recommender is not fitted yet: call fit() or Recommender.load() first")
    if rec.model_.events.text is None:  # use_event_text off: the events' texts are not the model's
        return {}
    rows = _text_rows(user_history(rec.data_, user_row(rec, user), rec.model_.cfg.max_len))
    return {p: rec.data_.texts[row] for p, row in enumerate(rows) if row}


def _text_rows(batch: Batch) -> list[int]:
    """Each event's row of its own text in a one-user history batch [1, n] (0 = no text of its own)."""
    return [0] * int(batch.item.shape[1]) if batch.text is None else [int(r) for r in batch.text[0]]


def _one(
    live: LiveEncoder,
    subject: Subject,
    model: BehaviorModel,
    job: tuple[str, int | None, str, int],
    titles: Titles,
    quadrature: tuple[int, float | None],
    texts: list[str],
) -> TokenAttribution:
    """One text's TokenAttribution: LIG, then the check that the live text reproduces the stored vector."""
    source, position, item_id, idx = job
    if source == EVENT_TEXT and position is not None:
        text, stored = texts[idx], _event_text(model).table[idx]
        score = event_text_score(subject, model, idx, position)
    else:
        text, stored = titles.get(item_id, (None, None))[1] or "", model.items.vectors(torch.tensor(idx))
        score = candidate_score(subject, model, idx) if position is None else event_score(subject, model, idx, position)
    out = attribute_text(live, score, text, *quadrature)
    gap = check_embedding(out.pop("embedding"), stored, item_id)
    details = {
        "steps": out.pop("steps"),
        "tolerance": quadrature[1],
        "quadrature": "gausslegendre",
        "baseline": f"{live.baseline_token} word embeddings",
        "embedding_difference": gap,
        "max_tokens": live.max_length,
    }
    return TokenAttribution(
        source=source,
        position=position,
        item=item_id,
        text=text,
        target=subject.target,
        units=TARGET_UNITS[subject.target],
        details=details,
        **out,
    )
