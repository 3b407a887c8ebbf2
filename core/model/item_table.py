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
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The vectors of the distinct texts [V, T] (row 0, padding, zeros), each item's row of them [N+1] (item 0: row
    0) and the encoder's fingerprint (what the cache is keyed by); ``adapter``: a run's fine-tuning
    (:class:`core.model.encoder_spec.Adapter`) applied to the encoder. Each distinct text is encoded and held once."""
    enc = TextEncoder(encoder, cache_dir=Path(cache_dir) if cache_dir else None, device=device, adapter=adapter)
    codes, distinct = pd.factorize(pd.Series(texts, dtype=object), sort=False)
    emb = enc.encode([str(t) for t in distinct], progress=progress)
    table = torch.zeros(len(distinct) + 1, emb.shape[1])
    table[1:] = torch.from_numpy(emb)
    text_of = torch.zeros(len(texts) + 1, dtype=torch.long)
    text_of[1:] = torch.from_numpy(codes.astype("int64") + 1)
    return table, text_of, enc.fingerprint
