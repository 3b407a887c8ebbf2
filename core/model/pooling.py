"""How a text encoder turns token states into one vector: the pooling modes and the model folder's own choice.

:func:`pool` reduces the last hidden states [B, L, D] to [B, D] by ``mean``, ``cls`` (the
first real token), ``max`` or ``lasttoken`` (the last real token, right or left padding).
:func:`resolve_pooling` reads which one a model folder declares, and the document prompt that
goes before every item text:

1. a sentence-transformers layout: ``modules.json`` names a ``Pooling`` module whose folder
   holds a ``config.json``, either ``"pooling_mode": "cls"`` (newer) or the boolean keys
   ``pooling_mode_cls_token``, ``pooling_mode_mean_tokens``, ``pooling_mode_max_tokens``,
   ``pooling_mode_lasttoken``... (older; none set means mean). Modules after the pooling
   (Dense, Normalize) are not applied; whether vectors are L2-normalized is the encoder's
   own ``normalize`` setting.
2. else a decoder-only model (``is_decoder``, an architecture ending in ``ForCausalLM`` or
   ``LMHeadModel``, or a decoder model type such as gpt2, llama, mistral, qwen2): ``lasttoken``,
   the only state that has read the whole text under causal attention;
3. else ``mean``.

The prompt is the one sentence-transformers' ``encode_document`` uses: the first of the
``document``, ``passage`` and ``corpus`` entries of ``prompts`` in
``config_sentence_transformers.json``, else the ``default_prompt_name`` entry; none: "".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from core.errors import ArtifactError

POOLING_MODES = ("mean", "cls", "max", "lasttoken")
_LEGACY_KEYS = {  # sentence-transformers' boolean keys, in the order it concatenates them
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")
# fmt: off
_DECODER_TYPES = frozenset((  # config model_type of causal language models
    "bloom", "codegen", "falcon", "gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "gpt_bigcode", "gpt_neo",
    "gpt_neox", "gptj", "llama", "mistral", "mixtral", "mpt", "olmo", "olmo2", "opt", "phi", "phi3", "qwen2",
    "qwen2_moe", "qwen3", "qwen3_moe", "stablelm", "starcoder2",
))
# fmt: on


@dataclass(frozen=True)
class Pooling:
    """A model folder's pooling: ``mode`` (one of :data:`POOLING_MODES`), the document ``prompt``
    put before every text ("" for none) and ``source``, the file or rule it comes from."""

    mode: str
    prompt: str = ""
    source: str = "default"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of token states where ``mask`` is 1.

    Args:
        hidden: [B, L, D] last hidden states.
        mask: [B, L] attention mask (1 = real token, 0 = padding).
    Returns:
        [B, D] pooled vectors (zeros for a row with no tokens).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per text from its token states, padding ignored whichever side it is on.

    Args:
        hidden: [B, L, D] last hidden states.
        mask: [B, L] attention mask (1 = real token, 0 = padding), right or left padded.
        mode: ``mean`` (average of the real tokens), ``cls`` (the first real token: [CLS] for
            BERT-style encoders), ``max`` (per dimension over the real tokens) or ``lasttoken``
            (the last real token: the only one a causal decoder lets read the whole text).
    Returns:
        [B, D] pooled vectors; zeros for a row with no tokens, in every mode.
    Differentiable in ``hidden`` (token attributions run through it).
    """
    if mode == "mean":
        return mean_pool(hidden, mask)
    if mode not in POOLING_MODES:
        raise ArtifactError(f"pooling mode {mode!r} is not one of {', '.join(POOLING_MODES)}")
    real = mask.bool()  # [B, L]
    has = real.any(dim=1, keepdim=True)  # [B, 1]
    if mode == "max":
        out = hidden.masked_fill(~real.unsqueeze(-1), float("-inf")).amax(dim=1)  # [B, D]
    else:
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [B, L]
        if mode == "cls":  # the smallest real position
            at = torch.where(real, positions, mask.shape[1]).amin(dim=1).clamp(max=mask.shape[1] - 1)
        else:  # the largest real position
            at = torch.where(real, positions, -1).amax(dim=1).clamp(min=0)
        out = hidden[torch.arange(hidden.shape[0], device=hidden.device), at]  # [B, D]
    return torch.where(has, out, torch.zeros_like(out))


def resolve_pooling(folder: Path) -> Pooling:
    """The pooling and document prompt that the model in ``folder`` declares (see the module doc).

    Raises ArtifactError naming the file and key for a malformed or unsupported declaration.
    """
    prompt = _document_prompt(folder)
    declared = _sentence_transformers_pooling(folder)
    if declared is not None:
        mode, include_prompt, source = declared
        if prompt and not include_prompt:
            raise ArtifactError(
                f"{source} sets include_prompt false, which leaves the document prompt {prompt!r} out of the "
                f"pooling; that is not supported: expected include_prompt true or no document prompt"
            )
        return Pooling(mode, prompt, source)
    config_file = folder / "config.json"
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_file} holds {type(config).__name__}; expected a JSON object")
    if _is_decoder_only(config):
        return Pooling("lasttoken", prompt, f"{config_file} (a decoder-only model)")
    return Pooling("mean", prompt)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}; expected a JSON file") from exc


def _is_decoder_only(config: dict[str, Any]) -> bool:
    """True for a causal language model's config (GPT-2, Llama, Mistral, Qwen2...)."""
    if config.get("is_decoder") is True:
        return True
    archs = config.get("architectures") or []
    if any(isinstance(a, str) and a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return True
    return config.get("model_type") in _DECODER_TYPES


def _sentence_transformers_pooling(folder: Path) -> tuple[str, bool, str] | None:
    """(mode, include_prompt, config file) of the Pooling module in ``modules.json``; None without one."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ArtifactError(f"{modules_file} is not a list of modules; expected [{{'type': ..., 'path': ...}}, ...]")
    found = [m for m in modules if str(m.get("type", "")).rsplit(".", 1)[-1] == "Pooling"]
    if not found:
        return None
    sub = found[0].get("path")
    if not isinstance(sub, str) or PurePosixPath(sub).is_absolute() or ".." in PurePosixPath(sub).parts:
        raise ArtifactError(f"{modules_file}: the Pooling module's path {sub!r}; expected a folder inside {folder}")
    config_file = folder / sub / "config.json"
    if not config_file.is_file():
        raise ArtifactError(f"{modules_file} names a Pooling module in {sub!r}, but {config_file} does not exist")
    config = _read_json(config_file)
    if not isinstance(config, dict):
        raise ArtifactError(f"{config_file} holds {type(config).__name__}; expected a JSON object")
    include_prompt = config.get("include_prompt", True)
    if not isinstance(include_prompt, bool):
        raise ArtifactError(f"{config_file}: include_prompt is {include_prompt!r}; expected true or false")
    return _pooling_mode(config, config_file), include_prompt, str(config_file)


def _pooling_mode(config: dict[str, Any], config_file: Path) -> str:
    """The one pooling mode of a sentence-transformers Pooling config."""
    if "pooling_mode" in config:
        key, value = "pooling_mode", config["pooling_mode"]
        modes = [value] if isinstance(value, str) else value
        if not isinstance(modes, list) or not modes or not all(isinstance(m, str) for m in modes):
            raise ArtifactError(f"{config_file}: pooling_mode is {value!r}; expected one of {', '.join(POOLING_MODES)}")
    else:
        for name in _LEGACY_KEYS:
            if not isinstance(config.get(name, False), bool):
                raise ArtifactError(f"{config_file}: {name} is {config[name]!r}; expected true or false")
        key, modes = "pooling_mode_* keys", [mode for name, mode in _LEGACY_KEYS.items() if config.get(name)]
        modes = modes or ["mean"]  # no mode switched on: sentence-transformers' default
    if len(modes) > 1:
        raise ArtifactError(
            f"{config_file}: {key} combine {modes} (concatenated vectors); expected a single mode, "
            f"one of {', '.join(POOLING_MODES)}"
        )
    if modes[0] not in POOLING_MODES:
        raise ArtifactError(
            f"{config_file}: {key} asks for {modes[0]!r} pooling, which is not supported; "
            f"expected one of {', '.join(POOLING_MODES)}"
        )
    return modes[0]


def _document_prompt(folder: Path) -> str:
    """The prompt sentence-transformers puts before a document, from ``config_sentence_transformers.json``."""
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return ""
    config = _read_json(path)
    if not isinstance(config, dict):
        raise ArtifactError(f"{path} holds {type(config).__name__}; expected a JSON object")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ArtifactError(f"{path}: prompts is {prompts!r}; expected an object of prompt names to strings")
    for name in _DOCUMENT_PROMPTS:
        if name in prompts:
            return str(prompts[name])
    default = config.get("default_prompt_name")
    if default is None:
        return ""
    if default not in prompts:
        raise ArtifactError(
            f"{path}: default_prompt_name {default!r} is not among the prompts {sorted(prompts)}; "
            f"expected one of them or null"
        )
    return str(prompts[default])
