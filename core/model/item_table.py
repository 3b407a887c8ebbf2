"""The item side's inputs: each item's text, in model order, and the frozen encoder's table of their vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core import schema as S
from core.data.sequences import SequenceData
from core.model.encoder import TextEncoder
from core.progress import ProgressFn


def item_texts(data: SequenceData, items: pd.DataFrame | None) -> list[str]:
    """The text of items 1..N (empty where the catalogue has none)."""
    if items is None or S.ITEM_TEXT not in items:
        return [""] * data.n_items
    lookup = dict(zip(items[S.ITEM_ID].astype(str), items[S.ITEM_TEXT].fillna("").astype(str)))
    return [lookup.get(i, "") for i in data.item_ids[1:]]


def encode_items(
    encoder: str | None,
    texts: list[str],
    cache_dir: Any,
    device: str,
    progress: ProgressFn | None,
    adapter: Any = None,
) -> tuple[torch.Tensor, str]:
    """[N+1, T] text vectors (row 0, padding, zeros) and the encoder's fingerprint (what the cache is keyed by);
    ``adapter``: a run's fine-tuning (:class:`core.model.encoder_spec.Adapter`) applied to the encoder."""
    enc = TextEncoder(encoder, cache_dir=Path(cache_dir) if cache_dir else None, device=device, adapter=adapter)
    emb = enc.encode(texts, progress=progress)
    table = torch.zeros(len(texts) + 1, emb.shape[1])
    table[1:] = torch.from_numpy(emb)
    return table, enc.fingerprint
