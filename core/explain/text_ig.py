"""Layer Integrated Gradients over a run's text encoder: the live encoder, one text's attributions, words.

:class:`LiveEncoder` loads the run's encoder for gradients (document prompt + text -> tokenize ->
encoder -> the folder's pooling -> L2 norm, exactly as :class:`core.model.encoder.TextEncoder`
embeds texts); :func:`attribute_text` runs Captum's LayerIntegratedGradients of any score of the
text embedding over the word embeddings, from a baseline of the pad token (a decoder-only
tokenizer without one: its end-of-sequence, else unknown token) in place of every text token
(special tokens and the prompt kept), doubling Gauss-Legendre nodes until complete;
:func:`merge_words` sums word pieces into words; :func:`check_embedding` refuses a text that no
longer gives the stored vector. :mod:`core.explain.tokens` applies them to an explanation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import ArtifactError
from core.model.encoder import TextEncoder
from core.model.encoder_spec import encoder_folder
from core.model.pooling import pool
from core.model.recommender import Recommender

MAX_STEPS = 256
TOLERANCE = 0.05  # a target with kinks on the path (the fused score's clamps) can need more than 32 nodes
EMBEDDING_TOLERANCE = 1e-3  # max |live − stored| of a (unit-norm) text embedding before the text counts as changed
ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # text embeddings [S, T] -> target [S]


class LiveEncoder:
    """A run's text encoder loaded for gradients: tokenizer, network and TextEncoder's pooling settings."""

    def __init__(self, enc: TextEncoder) -> None:
        self.tokenizer, net, self.max_length = enc.loaded()
        self.net, self.normalize, self.pooling = net.requires_grad_(False), enc.normalize, enc.pooling
        self.device, self.word_embeddings, self.dim = self.net.device, self.net.get_input_embeddings(), enc.dim
        self.lock = threading.Lock()  # Captum hooks the shared embedding layer while attributing
        # the baseline: the pad token, which TextEncoder sets to EOS (else UNK) for a tokenizer without one
        self.baseline_token, self.baseline_id = self.tokenizer.pad_token, self.tokenizer.pad_token_id
        if self.baseline_id is None:
            raise ArtifactError(
                f"the tokenizer in {enc.model_path} has no id for its pad token {self.baseline_token!r}, "
                f"which token attributions use as the baseline"
            )

    def tokenize(self, text: str) -> dict[str, Any]:
        """One text -> input_ids [1, L], extra forward tensors, baseline ids [1, L], pieces, word ids, spans.

        The document prompt goes first, as TextEncoder embeds; its tokens count as special (kept in
        the baseline, left out of the words), and ``spans`` index the text without it.
        """
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        prompt = self.pooling.prompt
        enc = self.tokenizer(
            [prompt + text],
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=fast,
        )
        ids, special = enc["input_ids"], enc["special_tokens_mask"].bool()
        spans = enc["offset_mapping"][0].tolist() if fast else None
        if prompt:
            special = special | self._prompt_tokens(ids, spans, len(prompt))
            spans = None if spans is None else [[max(a - len(prompt), 0), max(b - len(prompt), 0)] for a, b in spans]
        extra = {
            k: v.to(self.device)
            for k, v in enc.items()
            if k not in ("input_ids", "special_tokens_mask", "offset_mapping")
        }
        return {
            "ids": ids.to(self.device),
            "extra": extra,
            "baseline": torch.where(special, ids, self.baseline_id).to(self.device),
            "pieces": self.tokenizer.convert_ids_to_tokens(ids[0].tolist()),
            "special": special[0].tolist(),
            "word_ids": enc.word_ids(0) if fast else None,
            "spans": spans,
        }

    def _prompt_tokens(self, ids: torch.Tensor, spans: list[list[int]] | None, prompt_chars: int) -> torch.Tensor:
        """[1, L] True where a token belongs to the document prompt.

        Fast tokenizers: a token that ends within the prompt's characters (a piece that joins the
        prompt's last space to the text's first word is the text's). Others: the tokens from the
        first one of the prompt tokenized alone, for as long as they agree with it.
        """
        if spans is not None:
            return torch.tensor([[a < b <= prompt_chars for a, b in spans]])
        alone = self.tokenizer(self.pooling.prompt, add_special_tokens=False)["input_ids"]
        row, out = ids[0].tolist(), torch.zeros_like(ids, dtype=torch.bool)
        if not alone or alone[0] not in row:
            raise ArtifactError(
                f"the document prompt {self.pooling.prompt!r} does not start with the same token before a text "
                f"as alone, so its tokens cannot be kept out of the attributions; expected a fast tokenizer"
            )
        start = end = row.index(alone[0])
        while end < len(row) and end - start < len(alone) and row[end] == alone[end - start]:
            end += 1
        out[0, start:end] = True
        return out

    def embed(self, input_ids: torch.Tensor, extra: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """input_ids [S, L] (+ attention_mask etc. [S, L]) -> text embeddings [S, T], as TextEncoder stores them."""
        if input_ids.shape[1] == 0:  # a text without tokens embeds to zeros, as in TextEncoder
            return torch.zeros(input_ids.shape[0], self.dim, device=input_ids.device)
        hidden = self.net(input_ids=input_ids, **extra).last_hidden_state  # [S, L, T]
        pooled = pool(hidden, extra["attention_mask"], self.pooling.mode)  # [S, T]
        return F.normalize(pooled, p=2.0, dim=1) if self.normalize else pooled


def live_encoder(rec: Recommender) -> LiveEncoder:
    """The loaded encoder of a fitted recommender (cached per process); ArtifactError if it is gone or changed."""
    device, folder, adapter = rec.device_.type, encoder_folder(rec.encoder), getattr(rec, "adapter_", None)
    enc = TextEncoder(folder, device=device, adapter=adapter)
    name = "the bundled all-MiniLM-L6-v2" if folder is None else repr(folder)
    name += "" if adapter is None else f" with the run's {adapter.finetune} fine-tuning"
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
    key = (fingerprint, device)
    with _LOCK:
        if key not in _LOADED:
            while len(_LOADED) >= 2:  # the two most recent encoders stay loaded
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = LiveEncoder(enc)
        return _LOADED[key]


_LOADED: dict[tuple[str, str], LiveEncoder] = {}  # one loaded encoder per (fingerprint, device) in this process
_LOCK = threading.Lock()


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
    ``text`` (surrounding spaces dropped); otherwise WordPiece rules: a piece starting with
    ``##`` continues the word.
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
            return text[spans[g[0]][0] : spans[g[-1]][1]].strip()  # byte-level BPE pieces carry their space
        return "".join(pieces[i].removeprefix("##") if k else pieces[i] for k, i in enumerate(g))

    return [(word(g), float(sum(values[i] for i in g))) for g in groups]


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
        gap, values = float(ends[0] - ends[1]), []
        while tok["ids"].shape[1] > 0:  # a text without tokens (a decoder's '') has nothing to attribute
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
        delta = float(sum(values) - gap)
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
