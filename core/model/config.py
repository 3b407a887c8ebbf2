"""Every setting of a run, typed, in one place: the dataclasses are the schema and the validation.

A run is configured by a JSON object (``--config``, the Train page)::

    {"encoder": null, "heads": "both", "exclude_seen": null, "target_behavior": null, "request_time": "standin",
     "cold_items": 0, "device": "auto",
     "model": {ModelConfig settings}, "train": {TrainConfig settings}}

Each field declares its type and, in its metadata, its range or choices; :func:`check_settings`
derives every check from them, so a new setting is one field here. Every bad value is a
:class:`~core.errors.DataError` naming the setting, the value and what was expected. Fields
marked ``derived`` are computed from the data (catalogue size, rating scale) and cannot be set.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core._checks import check_number, check_whole, is_finite_number
from core.errors import DataError
from core.model.encoder_spec import check_encoder_setting, encoder_spec

HEADS = ("both", "engagement", "rating")
DEVICES = ("auto", "cpu", "cuda")
# the engagement loss: the full softmax; BCE or gBCE (gSASRec's calibrated BCE) with sampled negatives per position;
# a sampled softmax over the batch's targets and popularity-sampled negatives with log-Q correction; or "auto"
LOSSES = ("softmax", "bce", "gbce", "sampled_softmax", "auto")
SIGMOID_LOSSES = ("bce", "gbce")  # their engagement probability is sigmoid(logit), not a softmax over the items
# "auto" trains the full softmax up to this many items and the sampled softmax above (see the README: a full
# softmax step over N items costs positions x N x d_model; above this, it is most of the step on this CPU)
AUTO_SAMPLED_ABOVE = 50_000
REQUEST_TIMES = ("standin", "actual")  # as core.model.protocol.REQUEST_TIMES
REPEAT_EVIDENCE = ("compound", "sum")
PRIVACY_KEYS = ("epsilon", "delta", "max_grad_norm")  # train.privacy (core.model.privacy)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
    derived: bool = False,
    check: Callable[[str, Any], None] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with its constraints: ``low <= value <= high`` (``< below``), one of ``choices``,
    a custom ``check(name, value)``; ``derived`` fields come from the data, never from the analyst."""
    meta = {"low": low, "high": high, "below": below, "choices": choices, "derived": derived, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _check_loss_weights(name: str, value: Any) -> None:
    if value == "uncertainty":
        return
    pair = isinstance(value, (list, tuple)) and len(value) == 2
    if not pair or any(not is_finite_number(w) or w < 0 for w in value) or sum(value) <= 0:
        raise DataError(
            f"setting {name}={value!r}: expected [w_engagement, w_rating], two non-negative numbers "
            'not both zero, or "uncertainty"'
        )


def _check_min_improvement(name: str, value: Any) -> None:
    if value != "auto" and (isinstance(value, bool) or not is_finite_number(value) or value < 0):
        raise DataError(f'setting {name}={value!r}: expected "auto" (one standard error) or a number of at least 0')


def _check_privacy(name: str, value: Any) -> None:
    """The ``train.privacy`` setting: null (off) or {"epsilon": > 0, "delta": null | (0, 1), "max_grad_norm": > 0}."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise DataError(
            f'setting {name}={value!r}: expected null or {{"epsilon": 8, "delta": null, "max_grad_norm": 1}}'
        )
    bad = sorted(set(value) - set(PRIVACY_KEYS))
    if bad:
        raise DataError(f"setting {name}: unknown key(s) {bad}: expected some of {list(PRIVACY_KEYS)}")
    eps: Any = value.get("epsilon")
    if not is_finite_number(eps) or eps < 0.01:
        raise DataError(f"setting {name}.epsilon={eps!r}: expected a number of at least 0.01 (the privacy budget)")
    delta = value.get("delta")
    if delta is not None and (not is_finite_number(delta) or not 0 < delta < 1):
        raise DataError(f"setting {name}.delta={delta!r}: expected null (1 / users) or a number between 0 and 1")
    norm = value.get("max_grad_norm", 1.0)
    if not is_finite_number(norm) or norm <= 0:
        raise DataError(f"setting {name}.max_grad_norm={norm!r}: expected a number above 0 (the clipping bound)")


@dataclass
class ModelConfig:
    """Architecture settings (all JSON-serializable); the first three and the rating scale come from the data."""

    n_items: int = setting(derived=True)
    n_behaviors: int = setting(derived=True)  # including padding index 0
    text_dim: int = setting(derived=True)
    d_model: int = setting(64, low=1)
    n_layers: int = setting(2, low=1)
    n_heads: int = setting(2, low=1)
    max_len: int = setting(200, low=1)
    dropout: float = setting(0.2, low=0.0, below=1.0)
    n_experts: int = setting(4, low=1)
    expert_dim: int = setting(64, low=1)
    use_text: bool = True
    use_item_id: bool = True
    # each event's own text (review, comment, query, tag) through the item text's encoder, projected into its
    # token (a learned "no text" vector where it has none); off where the training events have no text at all
    use_event_text: bool = True
    use_request_time: bool = True  # condition on when the prediction is asked (see RequestTime)
    use_memory: bool = True  # the additive behavior memory beside the transformer (see BehaviorMemory)
    # the repeat path: earlier events of a candidate straight into its logit (RepeatPath); None = on
    # where earlier items stay candidates (the protocol), off where they are excluded (it cannot rank then)
    use_repeat: bool | None = None
    # how the repeat path meets the rest of the logit: a mixture (True: log(e^explore + e^repeat), RepeatNet's
    # two modes; a noisy item vector cannot sink an item the user just met) or an added term (False)
    repeat_mix: bool = True
    # how a mixture's repeat mass grows with an item's earlier events: "compound" (each event adds its weight
    # to the item's repeat log-odds: mass e^g (e^(sum w) - 1)) or "sum" (mass e^g sum e^w, runs saved before it)
    repeat_evidence: str = setting("compound", choices=REPEAT_EVIDENCE)
    request_gap: float = setting(86400.0, low=0.0)  # seconds after the last event a whole-history request is asked
    value_mean: float = setting(0.0, derived=True)  # rating standardization, (value - mean) / std
    value_std: float = setting(1.0, derived=True)

    def __post_init__(self) -> None:
        if self.use_repeat is None:
            self.use_repeat = True
        if self.d_model % self.n_heads:
            raise DataError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class TrainConfig:
    """Optimization settings (JSON-serializable)."""

    epochs: int = setting(40, low=1)
    batch_size: int = setting(32, low=1)
    lr: float = setting(2e-3, low=0.0)
    weight_decay: float = setting(0.0, low=0.0)
    loss: str = setting("auto", choices=LOSSES)  # see LOSSES: the full softmax up to AUTO_SAMPLED_ABOVE items
    # negatives per position (bce, gbce), or shared by the batch's positions beside its targets (sampled_softmax)
    n_negatives: int = setting(100, low=1)
    gbce_t: float = setting(0.75, low=0.0, high=1.0)  # gBCE's calibration: 0 = plain BCE, 1 = fully calibrated
    loss_weights: str | list[float] = setting(check=_check_loss_weights, factory=lambda: [1.0, 0.5])
    event_dropout: float = setting(0.1, low=0.0, high=1.0)  # share of input events swapped for the mask token
    # share of training positions asked at the stand-in time (the event + the typical next-visit gap), as
    # held-out events are by default, instead of at the next event's own time
    standin_rate: float = setting(0.5, low=0.0, high=1.0)
    patience: int = setting(5, low=1)
    # early stopping counts an epoch as better when validation NDCG@10 beats the epoch to beat by more than this:
    # 0 = any rise; "auto" = one standard error of the users' paired gains (see the README: it stopped ML-100K early)
    min_improvement: float | str = setting(0.0, check=_check_min_improvement)
    rating_refit_epochs: int = setting(20, low=0)  # refit the rating task on the frozen encoder (valid RMSE)
    # >1: users sorted by history length within pools of this many batches (less padding, faster
    # epochs); 1 = plain shuffled batches. Sorting changed what small models learned (see the README).
    bucket_pool: int = setting(1, low=1)
    seed: int = 0
    threads: int | None = setting(None, low=1)
    # user-level differential privacy (DP-SGD): {"epsilon": 8, "delta": null, "max_grad_norm": 1.0}; null = off
    privacy: dict[str, Any] | None = setting(None, check=_check_privacy)
    # item-ID dropout: each training step, this share of the items lose their ID embedding and item biases
    # (what an item never trained on has), so the model learns to rank an item from its text alone
    item_id_dropout: float = setting(0.0, low=0.0, below=1.0)
    # an update (train --from RUN) trains each epoch on the users with events after its parent's last one, plus
    # this share of the other users, drawn anew every epoch (1: every user, as a retrain does)
    update_replay: float = setting(0.2, low=0.0, high=1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Settings:
    """The top level of a run's settings: the Recommender's constructor arguments."""

    # a local model folder (None: the bundled all-MiniLM-L6-v2), or {"path", "finetune", ...}: core.model.encoder_spec
    encoder: str | dict[str, Any] | None = setting(None, check=check_encoder_setting)
    heads: str = setting("both", choices=HEADS)
    exclude_seen: bool | None = None  # None = decide from the dataset's repeat rate
    target_behavior: str | None = None
    # when held-out events are asked: the stand-in time, or their own time ("actual": target time known)
    request_time: str = setting("standin", choices=REQUEST_TIMES)
    # the share of the items held out of training (the new-items protocol, core.model.held_out): chosen with
    # the run's seed, their events left out of every history, target and validation; 0 = none
    cold_items: float = setting(0.0, low=0.0, below=1.0)
    device: str = setting("auto", choices=DEVICES)
    model: dict[str, Any] = setting(factory=dict)
    train: dict[str, Any] = setting(factory=dict)


def resolve_loss(loss: str, n_items: int) -> str:
    """The engagement loss a run trains with: ``loss``, or for "auto" the full softmax up to
    :data:`AUTO_SAMPLED_ABOVE` items and the sampled softmax above."""
    return loss if loss != "auto" else "softmax" if n_items <= AUTO_SAMPLED_ABOVE else "sampled_softmax"


def check_settings_object(settings: Any) -> dict[str, Any]:
    """``settings`` (a run config's top level) if it is a JSON object of known keys, ``model`` and ``train``
    objects themselves; else a DataError naming what is wrong (the values are checked by :func:`check_settings`)."""
    if not isinstance(settings, dict):
        raise DataError(f"settings must be a JSON object, got {type(settings).__name__}")
    bad = sorted(set(settings) - set(settable(Settings)))
    if bad:
        raise DataError(f"unknown setting(s) {bad}: expected some of {sorted(settable(Settings))}")
    for key in ("model", "train"):
        if not isinstance(settings.get(key) or {}, dict):
            raise DataError(f"setting {key!r} must be a JSON object of {key} settings")
    return settings


def settable(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of a config class an analyst may set (not the derived ones)."""
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("derived")}


def _allowed(kind: Any) -> tuple[Any, ...]:
    """The members of a resolved type hint (``int | None`` -> (int, None))."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return tuple(None if a is type(None) else typing.get_origin(a) or a for a in typing.get_args(kind))
    return (typing.get_origin(kind) or kind,)


def check_value(name: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> None:
    """Raise DataError unless ``value`` fits the field's type hint ``kind`` and its constraints."""
    allowed, label = _allowed(kind), f"setting {name}"
    if meta.get("check") is not None:
        meta["check"](name, value)
    elif value is None:
        if None not in allowed:
            raise DataError(f"{label}=null: expected a value")
    elif bool in allowed:
        if not isinstance(value, bool):
            raise DataError(f"{label}={value!r}: expected true or false{', or null (auto)' if None in allowed else ''}")
    elif int in allowed:
        check_whole(label, value, meta.get("low"), meta.get("high"))
    elif float in allowed:
        check_number(label, value, meta.get("low"), meta.get("high"))
        if meta.get("below") is not None and value >= meta["below"]:
            raise DataError(f"{label}={value!r}: expected a value below {meta['below']}")
    elif meta.get("choices") is not None and value not in meta["choices"]:
        raise DataError(f"{label}={value!r}: expected one of {', '.join(meta['choices'])}")
    elif dict in allowed and not isinstance(value, dict):
        raise DataError(f"{label} must be a JSON object of {name} settings, got {type(value).__name__}")
    elif str in allowed and not isinstance(value, str):
        raise DataError(f"{label}={value!r}: expected a string{' or null' if None in allowed else ''}")


def check_section(cls: type, values: Mapping[str, Any], section: str) -> None:
    """Check a settings object against a config class: unknown keys, types and ranges."""
    if not isinstance(values, Mapping):
        raise DataError(f"{section} settings must be a JSON object, got {type(values).__name__}")
    known = settable(cls)
    bad = sorted(set(values) - set(known))
    if bad:
        raise DataError(f"unknown {section} setting(s) {bad}: expected some of {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        check_value(name, value, hints[name], known[name].metadata)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Check a whole settings object: the top level, then ``model`` and ``train``."""
    check_section(Settings, settings, "run")
    check_section(ModelConfig, settings.get("model") or {}, "model")
    check_section(TrainConfig, settings.get("train") or {}, "training")
    _check_private(settings)


def _check_private(settings: Mapping[str, Any]) -> None:
    """Refuse the settings that would learn from the users outside the accounting (DataError naming them)."""
    train = settings.get("train") or {}
    if train.get("privacy") is None:
        return
    if encoder_spec(settings.get("encoder")).tuned:
        raise DataError(
            "setting encoder.finetune with privacy: the fine-tuned encoder would learn from the users outside the "
            "privacy accounting; set finetune to none"
        )
    refit = train.get("rating_refit_epochs")
    if refit:
        raise DataError(
            f"training setting rating_refit_epochs={refit!r} with privacy: the rating refit trains the rating head "
            "again on the same users outside the privacy accounting; leave it out or set it to 0"
        )
    if settings.get("exclude_seen") is None:
        raise DataError(
            "setting exclude_seen=null with privacy: deciding it from the users' repeat rate is not private; "
            "set it to true (earlier items are not recommended again) or false (they stay candidates)"
        )
