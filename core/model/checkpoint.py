"""A fitted model on disk: ``model.safetensors`` + a sealed ``config.json``, and back.

The config records the settings, the architecture, the vocabularies (item IDs, behaviors),
the protocol, the rating scale, the encoder's fingerprint and the weights' checksum. Loading
rebuilds the sequences from the dataset's events with the saved vocabularies and refuses a
file that was edited, replaced, holds values of the wrong type (:mod:`core.model.saved_config`),
weights that are not finite (NaN, infinity), or does not fit the architecture. Saved in a
workspace, the config is sealed with the workspace key (:mod:`core.store.seals`). Runs saved
before the behavior memory, the request time and the event text existed load without them. The vectors of
the events' own texts are not saved (personal data): the caller rebuilds them (:mod:`core.model.event_text`).
A run trained with items held out (:mod:`core.model.held_out`) lists them under ``held_out_items`` and loads
without their events, as it trained; a run without the key has none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from core import schema as S
from core._checks import finite_or_none
from core.data.batches import leave_last_out
from core.data.sequences import SequenceData, build_sequences
from core.errors import ArtifactError
from core.model.config import ModelConfig
from core.model.fitted import Fitted, pick_device
from core.model.held_out import HELD_OUT_KEY, HeldOut, read_held_out, without_held_out
from core.model.network import BehaviorModel
from core.model.protocol import STANDIN, Protocol, RatingScale, check_request_time
from core.model.saved_config import check_saved_config
from core.store.files import load_json, load_state_into, load_tensors, save_json, save_tensors
from core.store.run_folder import CONFIG_FILE, FORMAT, MODEL_FILE, check_config, seal_config

# settings added after the first release: a config without them describes a model without them (an update of such
# a run keeps them so too, core.model.warm_start)
ADDED_LATER = {
    "use_memory": False,
    "use_request_time": False,
    "use_repeat": False,
    "repeat_mix": False,
    "repeat_evidence": "sum",
    "use_event_text": False,
}


def save_checkpoint(
    folder: Path, fitted: Fitted, settings: dict[str, Any], extras: dict[str, Any], key: bytes | None = None
) -> Path:
    """Write the weights, then the config that names their checksum (both atomically), sealed with ``key``
    (the workspace key) when given.

    ``extras``: ``encoder_fingerprint``, ``best_epoch``, ``history``, ``rating_refit``, ``privacy``,
    ``warm_start`` (stored as given), ``held_out_items`` (stored only when not None: other configs are as before).
    """
    held = extras.get(HELD_OUT_KEY)
    digest = save_tensors(folder / MODEL_FILE, fitted.model.state_dict())
    save_json(
        folder / CONFIG_FILE,
        seal_config(
            {
                "format": FORMAT,
                "settings": settings,
                "model_config": fitted.model.cfg.to_dict(),
                "weights_sha256": digest,
                "encoder_fingerprint": extras.get("encoder_fingerprint"),
                "protocol": {
                    "exclude_seen": fitted.protocol.exclude_seen,
                    "target_behavior": fitted.protocol.target_behavior,
                    "request_time": fitted.protocol.request_time,
                },
                "rating_scale": {"mean": fitted.scale.mean, "std": fitted.scale.std},
                "vocab": {"items": [str(i) for i in fitted.data.item_ids[1:]], "behaviors": fitted.data.behaviors[1:]},
                "best_epoch": extras.get("best_epoch"),
                "history": finite_or_none(extras.get("history") or []),
                "rating_refit": finite_or_none(extras.get("rating_refit")),
                "privacy": finite_or_none(extras.get("privacy")),
                "warm_start": extras.get("warm_start"),  # the run it started from and what it carried over
                **({HELD_OUT_KEY: held} if held is not None else {}),
                # a fine-tuned encoder's adapter file (core.model.finetune); other configs are as before
                **({"encoder_adapter": extras["encoder_adapter"]} if extras.get("encoder_adapter") else {}),
            },
            key,
        ),
    )
    return folder


ConfigCheck = Callable[[dict[str, Any], Path], object]


def load_checkpoint(
    folder: Path, events: pd.DataFrame, device: str, check: ConfigCheck | None = None
) -> tuple[dict[str, Any], Fitted]:
    """The checked config and the fitted bundle of ``folder`` over the dataset's ``events`` (events outside the
    saved vocabularies are dropped). ``check(config, path)`` checks the seal (default: the plain checksum;
    a workspace passes :func:`core.store.seals.check_run_seal`)."""
    config = load_json(folder / CONFIG_FILE)
    (check or check_config)(config, folder / CONFIG_FILE)
    check_saved_config(config, folder / CONFIG_FILE)
    held = read_held_out(config)
    data = saved_sequences(events, config, held)  # as it trained: without the held-out items' events
    proto = config["protocol"]
    protocol = Protocol(
        exclude_seen=bool(proto["exclude_seen"]),
        target_behavior=proto["target_behavior"],
        request_time=check_request_time(proto.get("request_time", STANDIN)),  # older runs: the stand-in time
        held_out_share=held.share if held else 0.0,
    )
    state = load_tensors(folder / MODEL_FILE, config.get("weights_sha256"))
    _check_finite(state, folder / MODEL_FILE)
    model = _network(config, state, folder)
    load_state_into(model, state, folder / MODEL_FILE)
    torch_device = pick_device(device)
    model.to(torch_device).eval()
    return config, Fitted(
        model,
        data,
        leave_last_out(data, protocol.target_behavior),
        protocol,
        RatingScale(**config["rating_scale"]),
        torch_device,
    )


def saved_sequences(events: pd.DataFrame, config: dict[str, Any], drop: HeldOut | None = None) -> SequenceData:
    """The dataset's events as sequences over a saved config's vocabularies (events outside them are dropped),
    without the events on the ``drop`` items."""
    vocab = config["vocab"]
    events = events[
        events[S.ITEM_ID].astype(str).isin(set(vocab["items"])) & events[S.BEHAVIOR].isin(vocab["behaviors"])
    ]
    return build_sequences(without_held_out(events, drop), item_ids=vocab["items"], behaviors=vocab["behaviors"])


def _network(config: dict[str, Any], state: dict[str, Any], folder: Path) -> BehaviorModel:
    try:
        mcfg = ModelConfig(**(ADDED_LATER | config["model_config"]))
        text = state["items.text"]
    except (TypeError, KeyError) as exc:
        raise ArtifactError(f"{folder / CONFIG_FILE} does not describe this model ({exc})") from exc
    if "items.text_of" not in state:  # saved before the table held each distinct text once: a row per item
        state["items.text_of"] = torch.arange(text.shape[0])
    return BehaviorModel(mcfg, text, state["items.text_of"])


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """ArtifactError naming the tensors that hold NaN or infinite values (a diverged training, or an altered file)."""
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ArtifactError(
            f"{path} holds NaN or infinite weights in {sorted(bad)[:5]}{' and more' if len(bad) > 5 else ''}: "
            "the training diverged or the file was altered; retrain the run (e.g. with a lower learning rate)"
        )
