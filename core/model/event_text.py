"""Behavior text: each event's own text (a review, a comment, a search query, a tag) in its token.

An event's text is read like item text: by the run's frozen encoder, through the same embedding cache
(keyed by the sha256 of the text, so a text many events share is embedded once, and a text that is also an
item's text once for both). :class:`~core.model.layers.EventText` projects the vector into the event's token;
an event without text gets a learned "no text" vector instead.

The vectors of the events' texts are personal data (``behaviorlens forget`` deletes a user's events and their
cached text embeddings), so they are never saved with the model: the table is a non-persistent buffer of the
network, built here from the events the model reads, at fit and again at load (as the sequences are), through
the cache. A loaded run reads its texts' vectors from the cache of the encoder it trained with (its fingerprint)
when the cache holds them all; otherwise it needs that encoder (its fingerprint is checked).

``use_event_text`` (default on) is turned off where the training events hold no text at all: the network is
then exactly the one without it (no extra parameter, same initialization). An update keeps its parent's choice.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.sequences import SequenceData
from core.errors import ArtifactError
from core.model.embedding_cache import EmbeddingCache, text_key
from core.model.encoder import TextEncoder
from core.model.network import BehaviorModel
from core.progress import ProgressFn

SETTING = "use_event_text"


def event_text_setting(model: dict[str, Any], data: SequenceData, warm: bool) -> dict[str, Any]:
    """The model settings with ``use_event_text`` off where ``data`` holds no event text (unless ``warm``: an
    update keeps its parent's architecture)."""
    if warm or data.has_text or model.get(SETTING) is False:
        return model
    return {**model, SETTING: False}


def share_texts(data: SequenceData, every: SequenceData | None) -> SequenceData:
    """``data`` with its text rows numbered as in ``every`` (a superset of its events: all the dataset's events where
    items are held out of training), so one table of text vectors serves both; ``data`` itself without ``every``."""
    if every is None:
        return data
    at = {text: i for i, text in enumerate(every.texts)}
    missing = [t for t in data.texts[1:] if t not in at]
    if missing:
        raise ArtifactError(f"{len(missing)} event text(s) of the training events are not among all the events'")
    rows = np.array([at[t] for t in data.texts], dtype=np.int64)
    return replace(data, text=rows[data.text], texts=list(every.texts))


def event_text_table(
    encoder: str | None,
    texts: list[str],
    cache_dir: Any,
    device: str,
    progress: ProgressFn | None = None,
    adapter: Any = None,
) -> tuple[torch.Tensor, str]:
    """[T+1, text_dim] vectors of ``texts`` (rows 1..T; row 0, no text, zeros) and the encoder's fingerprint
    (``adapter``: a fine-tuned run's, applied to the encoder)."""
    enc = TextEncoder(encoder, cache_dir=Path(cache_dir) if cache_dir else None, device=device, adapter=adapter)

    def tagged(event: dict[str, Any]) -> None:
        if progress is not None:
            progress({**event, "texts": "events"})

    emb = enc.encode(texts, progress=tagged)
    table = torch.zeros(len(texts) + 1, enc.dim)
    table[1:] = torch.from_numpy(emb)
    return table, enc.fingerprint


def cached_table(texts: list[str], cache_dir: Any, fingerprint: str, dim: int) -> torch.Tensor | None:
    """[T+1, dim] vectors of ``texts`` from the cache of encoder ``fingerprint``, when it holds every one (else
    None: the encoder must read the rest)."""
    if not cache_dir or not texts:
        return None
    folder = Path(cache_dir) / fingerprint
    if not (folder / "index.json").is_file():
        return None
    keys = [text_key(t) for t in texts]
    found = EmbeddingCache(folder, dim, fingerprint).lookup(keys)
    if len(found) < len(set(keys)):
        return None
    table = torch.zeros(len(texts) + 1, dim)
    table[1:] = torch.from_numpy(np.stack([found[k] for k in keys]))
    return table


def attach_event_text(
    model: BehaviorModel,
    data: SequenceData,
    encoder: str | None,
    cache_dir: Any,
    device: str,
    progress: ProgressFn | None = None,
    fingerprint: str | None = None,
    adapter: Any = None,
) -> None:
    """Give ``model`` the vectors of ``data``'s event texts (nothing for a model without event text).

    ``fingerprint``: the encoder the model trained with (a loaded run's); ArtifactError when the encoder's files
    now differ (its texts would be read by another encoder than the one the model learned from)."""
    part = model.events.text
    if part is None:
        return
    if not data.has_text:
        part.set_table(torch.zeros(1, model.cfg.text_dim))
        return
    cached = None if fingerprint is None else cached_table(data.texts[1:], cache_dir, fingerprint, model.cfg.text_dim)
    if cached is not None:  # a loaded run whose texts are all in the cache: the encoder's files are not needed
        part.set_table(cached)
        return
    table, found = event_text_table(encoder, data.texts[1:], cache_dir, device, progress, adapter)
    if fingerprint is not None and found != fingerprint:
        raise ArtifactError(
            f"the model reads event text with the encoder it trained with, and the encoder's files differ "
            f"(fingerprint {found[:12]}, the run's {fingerprint[:12]}): restore encoder {encoder!r} or retrain"
        )
    part.set_table(table)
