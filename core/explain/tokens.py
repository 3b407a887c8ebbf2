"""Text-token attributions: LayerIntegratedGradients (Captum) on the text encoder's word embeddings.

The run's encoder runs live on an item's text (tokenize -> encoder -> mean pooling -> L2
norm, as :class:`core.model.encoder.TextEncoder`; it must reproduce the stored vector, else an
ArtifactError says the text or encoder changed) and its output replaces the item's row
of ``ItemEncoder.text`` on a private copy of the model: ``candidate``: where the explained
item is scored (history tokens keep the stored vectors); ``event``: one history event's
token only. The target is the explanation's (engagement, rating or fused; ``subject_for``).
Baseline: every non-special token's word embedding swapped for [PAD]'s ([CLS]/[SEP],
positions and attention kept); Gauss-Legendre nodes; Σ attributions = f(text) − f(baseline)
up to ``completeness_delta``. Pieces are kept (``tokens``) and summed into ``words``. The
encoder runs on the run's device, the recommender copy on CPU like every attribution method.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from core._checks import check_whole, finite_or_none
from core.errors import ArtifactError, DataError, NotFittedError
from core.explain.explanation import TARGET_UNITS
from core.explain.scorer import HistoryScorer
from core.explain.subject import Labels, Subject, Titles, history_scorer, item_index, subject_for
from core.model.encoder import TextEncoder, mean_pool
from core.model.network import BehaviorModel
from core.model.recommender import Recommender

CANDIDATE, EVENT = "candidate", "event"
DEFAULT_STEPS = 32
MAX_STEPS = 256
TOLERANCE = 0.05  # a target with kinks on the path (the fused score's clamps) can need more than 32 nodes
EMBEDDING_TOLERANCE = 1e-3  # max |live − stored| of a (unit-norm) text embedding before the text counts as changed
ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # text embeddings [S, T] -> target [S]


@dataclass
class TokenAttribution:
    """Per-token attributions of one item text to one (user, item, target) score."""

    source: str  # "candidate" or "event"
    position: int | None  # the event's position in the explained window (0 = oldest); None for the candidate
    item: str  # original ID of the item whose text is attributed
    text: str
    tokens: list[str]  # word pieces, special tokens included
    attributions: list[float]  # [len(tokens)] in the target's units; 0 for special tokens
    words: list[tuple[str, float]]  # pieces summed into words, special tokens left out
    score: float  # target with the live text embedding
    baseline_score: float  # target with every non-special token's word embedding swapped for [PAD]'s
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


class LiveEncoder:
    """A run's text encoder loaded for gradients: tokenizer, network and TextEncoder's pooling settings."""

    def __init__(self, enc: TextEncoder) -> None:
        self.tokenizer, net, self.max_length = enc.loaded()
        self.net, self.normalize = net.requires_grad_(False), enc.normalize
        self.device, self.word_embeddings = self.net.device, self.net.get_input_embeddings()
        self.lock = threading.Lock()  # Captum hooks the shared embedding layer while attributing
        if self.tokenizer.pad_token_id is None:
            raise ArtifactError(
                f"the encoder at {enc.model_path} has no [PAD] token, which token attributions "
                f"use as the baseline; expected a BERT-style tokenizer"
            )

    def tokenize(self, text: str) -> dict[str, Any]:
        """One text -> input_ids [1, L], extra forward tensors, baseline ids [1, L], pieces, word ids, spans."""
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        enc = self.tokenizer(
            [text],
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=fast,
        )
        ids, special = enc["input_ids"], enc["special_tokens_mask"].bool()
        extra = {
            k: v.to(self.device)
            for k, v in enc.items()
            if k not in ("input_ids", "special_tokens_mask", "offset_mapping")
        }
        return {
            "ids": ids.to(self.device),
            "extra": extra,
            "baseline": torch.where(special, ids, self.tokenizer.pad_token_id).to(self.device),
            "pieces": self.tokenizer.convert_ids_to_tokens(ids[0].tolist()),
            "special": special[0].tolist(),
            "word_ids": enc.word_ids(0) if fast else None,
            "spans": enc["offset_mapping"][0].tolist() if fast else None,
        }

    def embed(self, input_ids: torch.Tensor, extra: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """input_ids [S, L] (+ attention_mask etc. [S, L]) -> text embeddings [S, T], as TextEncoder stores them."""
        hidden = self.net(input_ids=input_ids, **extra).last_hidden_state  # [S, L, T]
        pooled = mean_pool(hidden, extra["attention_mask"])  # [S, T]
        return F.normalize(pooled, p=2.0, dim=1) if self.normalize else pooled


def live_encoder(rec: Recommender) -> LiveEncoder:
    """The loaded encoder of a fitted recommender (cached per process); ArtifactError if it is gone or changed."""
    device = rec.device_.type
    enc = TextEncoder(rec.encoder, device=device)
    name = "the bundled all-MiniLM-L6-v2" if rec.encoder is None else repr(rec.encoder)
    try:
        fingerprint = enc.fingerprint
    except ArtifactError as exc:
        raise ArtifactError(
            f"token attributions need the run's text encoder {name}, which cannot be loaded: {exc}"
        ) from exc
    expected = getattr(rec, "encoder_fingerprint_", None)
    if expected is not None and fingerprint != expected:
        raise ArtifactError(
            f"the text encoder {name} no longer matches the one this run was trained with "
            f"(fingerprint {fingerprint[:12]}…, expected {str(expected)[:12]}…): its files or "
            f"settings changed; restore them or retrain the run"
        )
    return _loaded(rec.encoder, fingerprint, device)


@functools.lru_cache(maxsize=2)
def _loaded(model: str | None, fingerprint: str, device: str) -> LiveEncoder:
    """One loaded encoder per (model, fingerprint, device) in this process."""
    del fingerprint  # part of the key only: changed files load afresh
    return LiveEncoder(TextEncoder(model, device=device))


def merge_words(
    pieces: list[str],
    values: list[float],
    special: list[bool],
    word_ids: list[int | None] | None = None,
    spans: list[list[int]] | None = None,
    text: str = "",
) -> list[tuple[str, float]]:
    """Sum piece attributions into words, special tokens left out.

    With a fast tokenizer's ``word_ids`` and character ``spans`` a word is its slice of
    ``text``; otherwise WordPiece rules: a piece starting with ``##`` continues the word.
    """
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if special[i]:
            continue
        follows = bool(groups) and groups[-1][-1] == i - 1
        if follows and (word_ids[i] == word_ids[i - 1] if word_ids is not None else piece.startswith("##")):
            groups[-1].append(i)
        else:
            groups.append([i])

    def word(g: list[int]) -> str:
        if spans is not None:
            return text[spans[g[0]][0] : spans[g[-1]][1]]
        return "".join(pieces[i].removeprefix("##") if k else pieces[i] for k, i in enumerate(g))

    return [(word(g), float(sum(values[i] for i in g))) for g in groups]


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


def _with_row(model: BehaviorModel, item: int, row: torch.Tensor, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()`` with row ``item`` of the (private) model's text table replaced by ``row`` [T] (differentiable)."""
    stored = model.items.text
    model.items.text = stored.index_put((torch.tensor([item]),), row[None].to(stored.dtype))
    try:
        return fn()
    finally:
        model.items.text = stored


def attribute_text(
    live: LiveEncoder, score: ScoreFn, text: str, steps: int, tolerance: float | None = TOLERANCE
) -> dict[str, Any]:
    """LIG of ``score`` over the word embeddings of ``text``; ``steps`` double (up to MAX_STEPS) until
    |completeness delta| <= tolerance · |score − baseline score| (+ 1e-6 for flat targets)."""
    from captum.attr import LayerIntegratedGradients

    start = time.perf_counter()
    tok = live.tokenize(text)
    names, extra = list(tok["extra"]), tuple(tok["extra"].values())

    def forward(input_ids: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        return score(live.embed(input_ids, dict(zip(names, args))).float().cpu())

    with live.lock, torch.enable_grad():
        lig = LayerIntegratedGradients(forward, live.word_embeddings)
        with torch.no_grad():  # the text and its baseline: [2, T] embeddings, [2] scores
            emb = (
                live.embed(
                    torch.cat([tok["ids"], tok["baseline"]]), {k: torch.cat([t, t]) for k, t in tok["extra"].items()}
                )
                .float()
                .cpu()
            )
            ends = score(emb).double()
        gap = float(ends[0] - ends[1])
        while True:
            attr = lig.attribute(
                tok["ids"],
                baselines=tok["baseline"],
                additional_forward_args=extra,
                n_steps=steps,
                method="gausslegendre",
            )
            values = attr.detach().sum(-1)[0].double().cpu().tolist()  # [L]
            delta = float(sum(values) - gap)
            if tolerance is None or abs(delta) <= tolerance * abs(gap) + 1e-6 or steps >= MAX_STEPS:
                break
            steps = min(MAX_STEPS, steps * 2)
    return {
        "tokens": tok["pieces"],
        "attributions": values,
        "score": float(ends[0]),
        "baseline_score": float(ends[1]),
        "completeness_delta": delta,
        "steps": steps,
        "words": merge_words(tok["pieces"], values, tok["special"], tok["word_ids"], tok["spans"], text),
        "runtime_ms": (time.perf_counter() - start) * 1000,
        "embedding": emb[0],
    }


def check_embedding(live_row: torch.Tensor, stored: torch.Tensor, item_id: str) -> float:
    """Max |live − stored| of an item's text embedding [T]; ArtifactError when the text no longer gives it."""
    gap = float((live_row.float() - stored.float()).abs().max())
    if not gap <= EMBEDDING_TOLERANCE:
        raise ArtifactError(
            f"the text of item {item_id!r} no longer embeds to the vector this run was trained "
            f"with (max difference {gap:.3g} > {EMBEDDING_TOLERANCE}): the item text or the "
            f"encoder changed since training; pass the texts it was trained on or retrain"
        )
    return gap


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
) -> list[TokenAttribution]:
    """Token attributions of the candidate ``item``'s text (first), then of each event in ``event_positions``.

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
    jobs = _texts(twin, subject, event_positions or [])
    live = live_encoder(rec)
    return [_one(live, subject, twin.model_, job, titles, (steps, tolerance)) for job in jobs]


def _texts(rec: Recommender, subject: Subject, positions: list[int]) -> list[tuple[str, int | None, str, int]]:
    """(source, position, item ID, item index) of the candidate, then of each event position."""
    n = len(subject.events)
    out: list[tuple[str, int | None, str, int]] = [(CANDIDATE, None, subject.item, item_index(rec, subject.item))]
    for p in positions:
        check_whole("event position", p, 0, n - 1, hint=f"the explained window has {n} events, 0 = oldest")
        out.append((EVENT, p, subject.events[p]["item"], item_index(rec, subject.events[p]["item"])))
    return out


def _one(
    live: LiveEncoder,
    subject: Subject,
    model: BehaviorModel,
    job: tuple[str, int | None, str, int],
    titles: Titles,
    quadrature: tuple[int, float | None],
) -> TokenAttribution:
    """One text's TokenAttribution: LIG, then the check that the live text reproduces the stored vector."""
    source, position, item_id, idx = job
    text = titles.get(item_id, (None, None))[1] or ""
    score = candidate_score(subject, model, idx) if position is None else event_score(subject, model, idx, position)
    out = attribute_text(live, score, text, *quadrature)
    gap = check_embedding(out.pop("embedding"), model.items.text[idx], item_id)
    details = {
        "steps": out.pop("steps"),
        "tolerance": quadrature[1],
        "quadrature": "gausslegendre",
        "baseline": "[PAD] word embeddings",
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
