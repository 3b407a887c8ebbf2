"""Training state for resuming an interrupted run: safetensors for tensors, JSON for the rest.

``train_state.safetensors`` holds the current model (``model.*``), the best model so far (``best.*``), the
loss module (``loss.*``), a fine-tuned encoder's trainable weights now and at the best epoch (``encoder.*``,
``best_encoder.*``) and AdamW's moments (``opt.<param>.<name>``); ``train_state.json`` the epoch, history,
optimizer hyper-parameters and the tensor file's checksum.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core._checks import finite_or_none
from core.errors import ArtifactError
from core.model.epochs import Stall
from core.model.training import FitState
from core.store.files import load_json, load_state_into, load_tensors, save_json, save_tensors, sha256_bytes
from core.store.run_folder import STATE_JSON, STATE_TENSORS

PENDING_SUFFIX = ".pending"  # tensors written, not yet named by the JSON or not yet in place


def save_train_state(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    state: FitState,
    epoch: int,
    tuner: Any = None,
) -> None:
    """Write everything needed to continue after ``epoch``: a kill at any point leaves the previous pair or this one.
    ``tuner``: the fine-tuned encoder (:class:`core.model.finetune.EncoderTuner`), when there is one."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"loss.{k}": v for k, v in loss_fn.state_dict().items()})
    if state.best_state is not None:  # a tensor the best state shares with the model is written once (model.*)
        current = model.state_dict()
        tensors.update({f"best.{k}": v for k, v in state.best_state.items() if not _same(v, current.get(k))})
    if tuner is not None:
        tensors.update({f"encoder.{k}": v for k, v in tuner.state().items()})
        tensors.update({f"best_encoder.{k}": v for k, v in (state.best_tuner or {}).items()})
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"opt.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = float(value)
    # a pair written in three steps, so that a kill at any point leaves a matching pair: the tensors beside
    # the current ones, then the JSON that names their checksum, then the tensors into place
    pending = folder / (STATE_TENSORS + PENDING_SUFFIX)
    digest = save_tensors(pending, tensors)
    save_json(
        folder / STATE_JSON,
        finite_or_none(
            {
                "epoch": epoch,
                "history": state.history,
                "best_epoch": state.best_epoch,
                "best_score": state.best_score if state.best_epoch > 0 else None,
                "stall": {"epoch": state.stall.epoch, "score": state.stall.score if state.stall.epoch > 0 else None},
                "param_groups": opt["param_groups"],
                "scalars": scalars,
                "sha256": digest,
            }
        ),
    )
    os.replace(pending, folder / STATE_TENSORS)


def _same(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """The same memory (a tensor the best state shares with the model), not merely equal values."""
    return b is not None and a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def has_train_state(folder: Path) -> bool:
    tensors = folder / STATE_TENSORS
    pending = folder / (STATE_TENSORS + PENDING_SUFFIX)
    return (folder / STATE_JSON).is_file() and (tensors.is_file() or pending.is_file())


def load_train_state(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    tuner: Any = None,
) -> FitState:
    """Restore model, loss, optimizer (and a fine-tuned encoder's weights, ``tuner``) in place; the fit state, with
    the last finished epoch in ``epochs_done``."""
    meta = load_json(folder / STATE_JSON)
    _finish_pending(folder, meta.get("sha256"))
    tensors = load_tensors(folder / STATE_TENSORS, meta.get("sha256"))
    part = _prefixed(tensors)
    load_state_into(model, part.get("model", {}), folder / STATE_TENSORS)
    load_state_into(loss_fn, part.get("loss", {}), folder / STATE_TENSORS)
    if tuner is not None:
        if "encoder" not in part:
            raise ArtifactError(f"{folder / STATE_TENSORS} holds no fine-tuned encoder weights to resume from")
        tuner.load_state(part["encoder"])
    optimizer.load_state_dict(
        {"state": _optimizer_slots(part.get("opt", {}), meta.get("scalars", {})), "param_groups": meta["param_groups"]}
    )
    best = part.get("best") or None
    if best is not None:  # what the best state shared with the model (core.model.training.snapshot) is the model's
        best = {**{k: v for k, v in model.state_dict().items() if k not in best}, **best}
    score = meta.get("best_score")
    state = FitState(
        history=list(meta.get("history", [])),
        best_epoch=int(meta.get("best_epoch", -1)),
        best_score=float("-inf") if score is None else float(score),
        best_state=best,
        epochs_done=int(meta["epoch"]),
        best_tuner=part.get("best_encoder") or None,
    )
    # the epoch to beat (saved before: the best one); its users' gains are not kept, so the next epoch beats it by
    # any rise
    stall = meta.get("stall") or {"epoch": state.best_epoch, "score": score}
    if int(stall.get("epoch") or 0) > 0 and stall.get("score") is not None:
        state.stall = Stall(int(stall["epoch"]), float(stall["score"]))
    return state


def _finish_pending(folder: Path, expected_sha256: str | None) -> None:
    """Complete a save killed between its JSON and its last rename: the pending tensors are the ones the JSON
    names; a pending file the JSON does not name (killed before the JSON) is left to the next save."""
    pending = folder / (STATE_TENSORS + PENDING_SUFFIX)
    if expected_sha256 is None or not pending.is_file():
        return
    if sha256_bytes(pending.read_bytes()) == expected_sha256:
        os.replace(pending, folder / STATE_TENSORS)


def _prefixed(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        out.setdefault(head, {})[rest] = value
    return out


def _optimizer_slots(
    tensors: dict[str, torch.Tensor], scalars: dict[str, dict[str, float]]
) -> dict[int, dict[str, Any]]:
    slots: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, _, name = key.partition(".")
        slots.setdefault(int(pid), {})[name] = value
    for pid, values in scalars.items():
        for name, number in values.items():
            slots.setdefault(int(pid), {})[name] = torch.tensor(number)  # a 0-d tensor, as AdamW keeps "step"
    if any(not s for s in slots.values()):
        raise ArtifactError("the saved optimizer state is incomplete")
    return slots
