"""Warm starts: a new model that begins where a saved one ended (``train --from RUN``).

An update trains on newer data from the weights of a run, not from scratch. The new data has its
own vocabularies: items seen for the first time, perhaps a new behavior. Every tensor of the saved
model that does not depend on them is copied as it is; the tables indexed by item (ID embeddings,
the two heads' item biases) and by behavior (the event embedding, the memory's and the repeat
path's weights) are copied row by row, matched by item ID and behavior name. New items keep their
fresh rows (their text embedding comes from the encoder like every item's) and new users need
nothing: the model has no user table. The new model takes the saved one's architecture, rating
scale and stand-in request gap, so the copied weights mean what they meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.sequences import SequenceData
from core.errors import ArtifactError
from core.model.checkpoint import ADDED_LATER
from core.model.config import ModelConfig
from core.model.encoder_spec import Adapter
from core.model.protocol import RatingScale
from core.store.files import load_tensors
from core.store.run_folder import MODEL_FILE

ITEM_TABLES = ("items.id_emb.weight", "engagement.item_bias.weight", "rating.item_bias.weight")
BEHAVIOR_TABLES = ("events.behavior.weight", "memory.behavior.weight", "repeat.behavior.weight")
RECOMPUTED = ("items.text", "items.text_of")  # the item text table: encoded again for the new catalogue
DERIVED = ("n_items", "n_behaviors", "text_dim", "value_mean", "value_std")  # ModelConfig fields from the data


@dataclass(frozen=True)
class Parent:
    """What a warm start takes from a saved model: its weights, vocabularies, architecture and scale."""

    run: str
    state: dict[str, torch.Tensor]
    items: list[str]  # item IDs of rows 1..N
    behaviors: list[str]  # behavior names of rows 1..B
    model_config: dict[str, Any]
    scale: RatingScale
    encoder_fingerprint: str | None = None
    horizon: int | None = None  # its last training event (seconds since the epoch); None: not known
    adapter: Adapter | None = None  # its fine-tuned encoder (core.model.finetune); None: the encoder was frozen

    def new_users(self, data: SequenceData, train_end: np.ndarray) -> np.ndarray | None:
        """[U] bool: which users have a training event after the parent's last one (None: the horizon is not
        known, so every user counts as new)."""
        if self.horizon is None:
            return None
        later = np.flatnonzero(data.ts > self.horizon)
        user = np.searchsorted(data.offsets, later, side="right") - 1  # the user of each later event
        user = user[later < train_end[user]]  # only events the update trains on
        out = np.zeros(data.n_users, dtype=bool)
        out[user] = True
        return out

    def architecture(self) -> dict[str, Any]:
        """The saved model's settings that are not derived from the data (width, layers, repeat evidence...); a
        setting its release did not have yet has the value that describes the model it saved."""
        return {k: v for k, v in (ADDED_LATER | self.model_config).items() if k not in DERIVED}


def read_parent(run: str, folder: Path, config: dict[str, Any], horizon: int | None = None) -> Parent:
    """The parent of a warm start from its run folder; ``config`` is its ``config.json``, already checked
    (seal and types) by the caller; ``horizon``: its last training event (seconds since the epoch)."""
    state = load_tensors(folder / MODEL_FILE, config.get("weights_sha256"))
    vocab = config["vocab"]
    scale = config.get("rating_scale") or {}
    return Parent(
        run=run,
        state=state,
        items=list(vocab["items"]),
        behaviors=list(vocab["behaviors"]),
        model_config=dict(config["model_config"]),
        scale=RatingScale(float(scale.get("mean", 0.0)), float(scale.get("std", 1.0))),
        encoder_fingerprint=config.get("encoder_fingerprint"),
        horizon=horizon,
        adapter=Adapter.read(config.get("encoder_adapter"), folder),
    )


def check_architecture(parent: Parent, cfg: ModelConfig, encoder_fingerprint: str | None) -> None:
    """ArtifactError unless the new model's architecture and text encoder are the parent's (only the sizes derived
    from the data differ)."""
    if parent.encoder_fingerprint and encoder_fingerprint != parent.encoder_fingerprint:
        raise ArtifactError(
            f"an update of run {parent.run} must read item text with its encoder, and the encoder's files differ "
            f"(fingerprint {str(encoder_fingerprint)[:12]}, the run's {parent.encoder_fingerprint[:12]})"
        )
    new = {k: v for k, v in cfg.to_dict().items() if k not in DERIVED}
    differ = sorted(k for k in set(new) | set(parent.architecture()) if new.get(k) != parent.architecture().get(k))
    if differ:
        pairs = ", ".join(f"{k}: {parent.architecture().get(k)!r} -> {new.get(k)!r}" for k in differ[:5])
        raise ArtifactError(f"an update of run {parent.run} must keep its architecture; these settings differ: {pairs}")


def _rows(new_ids: list[str], old_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(new rows, old rows) of the IDs both vocabularies hold (row 0, padding, with padding)."""
    old_at = {name: i + 1 for i, name in enumerate(old_ids)}
    pairs = [(i + 1, old_at[name]) for i, name in enumerate(new_ids) if name in old_at]
    new_rows, old_rows = [0], [0]
    for new, old in pairs:
        new_rows.append(new)
        old_rows.append(old)
    return torch.as_tensor(new_rows), torch.as_tensor(old_rows)


@torch.no_grad()
def warm_start(model: torch.nn.Module, parent: Parent, item_ids: np.ndarray, behaviors: list[str]) -> dict[str, int]:
    """Copy the parent's weights into ``model`` (built for the new data's ``item_ids`` [N+1] and ``behaviors``
    [B+1], index 0 padding); what was carried over: items kept and new, behaviors new."""
    own = model.state_dict()
    unknown = sorted(set(parent.state) - set(own))
    if unknown:
        raise ArtifactError(f"run {parent.run} holds weights this model does not have: {unknown[:5]}")
    item_rows = _rows([str(i) for i in item_ids[1:]], parent.items)
    behavior_rows = _rows(list(behaviors[1:]), parent.behaviors)
    for name, saved in parent.state.items():
        if name in RECOMPUTED:
            continue
        target = own[name]
        if name in ITEM_TABLES or name in BEHAVIOR_TABLES:
            new_rows, old_rows = item_rows if name in ITEM_TABLES else behavior_rows
            target[new_rows] = saved[old_rows].to(target.dtype)
        elif tuple(saved.shape) != tuple(target.shape):
            raise ArtifactError(
                f"run {parent.run}: {name} is {tuple(saved.shape)}, the new model's {tuple(target.shape)}"
            )
        else:
            target.copy_(saved)
    kept = len(item_rows[0]) - 1
    return {
        "items_kept": kept,
        "items_new": len(item_ids) - 1 - kept,
        "behaviors_new": len(behaviors) - len(behavior_rows[0]),
    }
