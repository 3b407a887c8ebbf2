"""Items held out of training (the cold-start, "new items" protocol): chosen by seed, their events left out.

``cold_items`` (a run setting, :mod:`core.model.config`) is the share of the dataset's items (those with at
least one event) held out of training entirely. They are drawn with the run's seed, so the same seed holds
out the same items; their events leave every training history, training target and validation event, and
the list of their IDs is saved with the run (``held_out_items`` in ``config.json``) so that a later
evaluation scores exactly those items (:mod:`core.model.new_items`).

Held-out items keep their place in the vocabulary and their text embeddings (the pretrained encoder reads
their text like every item's): a model that reads item text can reach them, an ID-only model cannot. They
learn nothing from their events, and nothing from being absent either: training leaves them out of the
softmax and of the sampled negatives, and :func:`silence_rows` gives their ID-embedding row and both item
biases zero, what no training at all would give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from core import schema as S
from core.data.sequences import SequenceData, build_sequences
from core.errors import ArtifactError, DataError
from core.model.network import BehaviorModel

HELD_OUT_KEY = "held_out_items"  # the key of a run's config.json that lists them (absent: none held out)


@dataclass(frozen=True)
class HeldOut:
    """The items held out of a run's training: the share asked for, the seed that drew them, their IDs (sorted)."""

    share: float
    seed: int
    items: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """What ``config.json`` stores under :data:`HELD_OUT_KEY`."""
        return {"share": self.share, "seed": self.seed, "items": list(self.items)}

    @property
    def percent(self) -> str:
        """The share as a percentage for labels: ``"10%"``."""
        return f"{self.share * 100:g}%"


def choose_held_out(events: pd.DataFrame, share: float, seed: int) -> HeldOut | None:
    """``share`` of the items that occur in ``events`` (at least one, never all), drawn with ``seed``; None for 0.

    The draw depends on the sorted item IDs and the seed alone: the same data and seed hold out the same items.
    """
    if not share:
        return None
    ids = np.unique(events[S.ITEM_ID].astype(str).to_numpy())  # sorted
    if len(ids) < 2:
        raise DataError(
            f"setting cold_items={share!r}: the dataset has {len(ids)} item(s) with events; holding items out of "
            "training needs at least 2"
        )
    n = min(len(ids) - 1, max(1, round(share * len(ids))))
    picked = np.sort(np.random.default_rng(seed).choice(len(ids), size=n, replace=False))
    return HeldOut(float(share), int(seed), tuple(str(i) for i in ids[picked]))


def without_held_out(events: pd.DataFrame, held: HeldOut | None) -> pd.DataFrame:
    """``events`` without the events on held-out items (the same frame when none are held out)."""
    if held is None:
        return events
    return events[~events[S.ITEM_ID].astype(str).isin(set(held.items))]


def training_sequences(
    events: pd.DataFrame, items: pd.DataFrame | None, held: HeldOut | None
) -> tuple[SequenceData, SequenceData | None]:
    """(the training view, every event) as sequences over one vocabulary: the catalogue's items and the events'.

    The training view lacks the held-out items' events; without held-out items it is every event and the
    second sequence is None.
    """
    catalogue = list(items[S.ITEM_ID].astype(str)) if items is not None else None
    if held is None:
        vocab = sorted(set(catalogue) | set(events[S.ITEM_ID].astype(str))) if catalogue else None
        return build_sequences(events, item_ids=vocab), None
    vocab = sorted(set(catalogue or []) | set(events[S.ITEM_ID].astype(str)))  # held-out items keep their place
    return build_sequences(without_held_out(events, held), item_ids=vocab), build_sequences(events, item_ids=vocab)


def held_out_index(data: SequenceData, held: HeldOut) -> np.ndarray:
    """Vocabulary indices (1..N) of the held-out items; ArtifactError when one is not in the vocabulary."""
    vocab = data.item_ids[1:].astype(str)
    pos = np.searchsorted(vocab, np.asarray(held.items, dtype=str))
    bad = [i for i, p in zip(held.items, pos) if p >= len(vocab) or vocab[p] != i]
    if bad:
        raise ArtifactError(f"held-out item(s) {bad[:5]} are not in the run's item vocabulary")
    return (pos + 1).astype(np.int64)


def blocked_items(data: SequenceData, held: HeldOut | None) -> torch.Tensor | None:
    """[N+1] bool, True for the held-out items (left out of the training softmax and negatives); None if none."""
    if held is None:
        return None
    mask = torch.zeros(data.n_items + 1, dtype=torch.bool)
    mask[torch.from_numpy(held_out_index(data, held))] = True
    return mask


@torch.no_grad()
def silence_rows(model: BehaviorModel, idx: np.ndarray) -> None:
    """Give the held-out items ``idx`` what a never-trained item gets: a zero item-ID embedding row (the padding
    row's value) and a zero item bias in the engagement and the rating head (their initial value).

    Their representation is then the projection of their text embedding alone, the same for every held-out
    item apart from its text: nothing of their events, or of their absence, is in the weights."""
    rows = torch.as_tensor(idx, dtype=torch.long)
    for weight in (model.items.id_emb.weight, model.engagement.item_bias.weight, model.rating.item_bias.weight):
        weight[rows.to(weight.device)] = 0.0


def read_held_out(config: dict[str, Any]) -> HeldOut | None:
    """The held-out items a saved run config records; None for a run trained without (or saved before them)."""
    found = config.get(HELD_OUT_KEY)
    if found is None:
        return None
    return HeldOut(float(found["share"]), int(found["seed"]), tuple(str(i) for i in found["items"]))


def check_held_out_record(value: Any) -> None:
    """DataError unless ``value`` is null or {"share": (0, 1), "seed": int, "items": [non-empty list of str]}."""
    if value is None:
        return
    if not isinstance(value, dict) or set(value) != {"share", "seed", "items"}:
        raise DataError(f'{HELD_OUT_KEY}: expected null or {{"share": 0.1, "seed": 0, "items": [item IDs]}}')
    share, seed, items = value["share"], value["seed"], value["items"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise DataError(f"{HELD_OUT_KEY}.share={share!r}: expected a number between 0 and 1")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{HELD_OUT_KEY}.seed={seed!r}: expected a whole number")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise DataError(f"{HELD_OUT_KEY}.items: expected a non-empty list of item IDs (strings)")
