"""Pooling modes on hand-made token states, and the pooling a model folder declares (its JSON files only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import ArtifactError
from core.model.pooling import POOLING_MODES, Pooling, mean_pool, pool, resolve_pooling

# two texts: 3 tokens and 1 token, D = 2
STATES = [
    [[1.0, -2.0], [3.0, 0.0], [-1.0, 5.0]],
    [[4.0, 4.0]],
]


def _padded(side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """STATES padded to length 4 on ``side`` with junk states (99) under mask 0: hidden [2, 4, 2], mask [2, 4]."""
    hidden, mask = torch.full((2, 4, 2), 99.0), torch.zeros(2, 4, dtype=torch.long)
    for b, rows in enumerate(STATES):
        at = slice(0, len(rows)) if side == "right" else slice(4 - len(rows), 4)
        hidden[b, at], mask[b, at] = torch.tensor(rows), 1
    return hidden, mask


EXPECTED = {
    "mean": [[1.0, 1.0], [4.0, 4.0]],
    "cls": [[1.0, -2.0], [4.0, 4.0]],
    "max": [[3.0, 5.0], [4.0, 4.0]],
    "lasttoken": [[-1.0, 5.0], [4.0, 4.0]],
}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_each_mode_reads_only_real_tokens_on_either_padding_side(mode: str, side: str) -> None:
    hidden, mask = _padded(side)
    torch.testing.assert_close(pool(hidden, mask, mode), torch.tensor(EXPECTED[mode]))


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_a_row_without_tokens_pools_to_zeros_and_gradients_flow(mode: str) -> None:
    hidden, mask = _padded("right")
    mask[1] = 0
    hidden.requires_grad_(True)
    out = pool(hidden, mask, mode)
    assert out[1].tolist() == [0.0, 0.0] and torch.isfinite(out).all()
    out.sum().backward()
    assert hidden.grad is not None and hidden.grad[1].abs().sum() == 0  # the empty row takes nothing
    assert hidden.grad[0, 3].abs().sum() == 0  # nor does padding


def test_mean_is_mean_pool_and_unknown_modes_are_refused() -> None:
    hidden, mask = _padded("right")
    assert torch.equal(pool(hidden, mask, "mean"), mean_pool(hidden, mask))
    with pytest.raises(ArtifactError, match="'weightedmean' is not one of mean, cls, max, lasttoken"):
        pool(hidden, mask, "weightedmean")


# -- what a folder declares ------------------------------------------------------------------------------------
def _folder(root: Path, config: dict[str, Any] | None = None, files: dict[str, Any] | None = None) -> Path:
    """A model folder with ``config.json`` and ``files`` ({relative path: JSON value, or text as is})."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config or {"model_type": "bert"}), encoding="utf-8")
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return root


MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
LEGACY = {
    "word_embedding_dimension": 8,
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": False,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}


@pytest.mark.parametrize(
    ("pooling_config", "mode"),
    [
        ({**LEGACY, "pooling_mode_cls_token": True}, "cls"),
        ({**LEGACY, "pooling_mode_max_tokens": True}, "max"),
        ({**LEGACY, "pooling_mode_mean_tokens": True}, "mean"),
        ({**LEGACY, "pooling_mode_lasttoken": True}, "lasttoken"),
        (LEGACY, "mean"),  # none switched on: sentence-transformers' default
        ({"embedding_dimension": 8, "pooling_mode": "cls"}, "cls"),
        ({"embedding_dimension": 8, "pooling_mode": ["lasttoken"]}, "lasttoken"),
    ],
)
def test_sentence_transformers_pooling_config(tmp_path: Path, pooling_config: dict[str, Any], mode: str) -> None:
    # a decoder's config: the Pooling module wins over the architecture rule
    files = {"modules.json": MODULES, "1_Pooling/config.json": pooling_config}
    folder = _folder(tmp_path / "m", {"model_type": "gpt2"}, files)
    got = resolve_pooling(folder)
    assert got == Pooling(mode, "", str(folder / "1_Pooling" / "config.json"))


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "gpt2", "architectures": ["GPT2Model"]},
        {"model_type": "qwen2"},
        {"model_type": "some_new_lm", "architectures": ["SomeNewLMForCausalLM"]},
        {"model_type": "bert", "is_decoder": True},
    ],
)
def test_decoder_only_models_pool_the_last_token(tmp_path: Path, config: dict[str, Any]) -> None:
    got = resolve_pooling(_folder(tmp_path / "m", config))
    assert got.mode == "lasttoken" and got.source.endswith("config.json (a decoder-only model)")


@pytest.mark.parametrize(
    "config", [{"model_type": "bert", "architectures": ["BertModel"]}, {"model_type": "xlm-roberta"}, {}]
)
def test_other_models_mean_pool(tmp_path: Path, config: dict[str, Any]) -> None:
    assert resolve_pooling(_folder(tmp_path / "m", config)) == Pooling("mean")


def test_modules_without_a_pooling_module_fall_back_to_the_model_kind(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m", {"model_type": "llama"}, {"modules.json": MODULES[:1]})
    assert resolve_pooling(folder).mode == "lasttoken"


@pytest.mark.parametrize(
    ("prompts", "prompt"),
    [
        ({"prompts": {"query": "query: ", "document": "doc: ", "passage": "passage: "}}, "doc: "),
        ({"prompts": {"query": "query: ", "corpus": "corpus: ", "passage": "passage: "}}, "passage: "),
        ({"prompts": {"query": "query: ", "corpus": "corpus: "}}, "corpus: "),
        ({"prompts": {"query": "query: ", "retrieval": "r: "}, "default_prompt_name": "retrieval"}, "r: "),
        ({"prompts": {"query": "query: "}, "default_prompt_name": None}, ""),
        ({"prompts": {}, "default_prompt_name": None}, ""),
        ({"__version__": {"sentence_transformers": "2.0.0"}}, ""),
    ],
)
def test_document_prompt(tmp_path: Path, prompts: dict[str, Any], prompt: str) -> None:
    folder = _folder(tmp_path / "m", None, {"config_sentence_transformers.json": prompts})
    assert resolve_pooling(folder) == Pooling("mean", prompt)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_Pooling/config.json": {**LEGACY, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}},
         r"1_Pooling/config\.json: pooling_mode_\* keys combine \['cls', 'mean'\]"),
        ({"1_Pooling/config.json": {"pooling_mode": "weightedmean"}},
         r"1_Pooling/config\.json: pooling_mode asks for 'weightedmean' pooling, which is not supported"),
        ({"1_Pooling/config.json": {"pooling_mode": "nonsense"}},
         r"1_Pooling/config\.json: pooling_mode asks for 'nonsense'.*expected one of mean, cls, max, lasttoken"),
        ({"1_Pooling/config.json": {"pooling_mode": 3}}, r"1_Pooling/config\.json: pooling_mode is 3"),
        ({"1_Pooling/config.json": {**LEGACY, "pooling_mode_max_tokens": "yes"}},
         r"1_Pooling/config\.json: pooling_mode_max_tokens is 'yes'; expected true or false"),
        ({"1_Pooling/config.json": "{not json"}, r"cannot read .*1_Pooling/config\.json"),
        ({}, r"modules\.json names a Pooling module in '1_Pooling', but .*1_Pooling/config\.json does not exist"),
        ({"1_Pooling/config.json": {"pooling_mode": "cls", "include_prompt": False},
          "config_sentence_transformers.json": {"prompts": {"document": "doc: "}}},
         r"1_Pooling/config\.json sets include_prompt false"),
        ({"1_Pooling/config.json": {}, "config_sentence_transformers.json": {"default_prompt_name": "x"}},
         r"config_sentence_transformers\.json: default_prompt_name 'x' is not among the prompts \[\]"),
        ({"1_Pooling/config.json": {}, "config_sentence_transformers.json": {"prompts": ["doc: "]}},
         r"config_sentence_transformers\.json: prompts is \['doc: '\]"),
    ],
)  # fmt: skip
def test_bad_declarations_name_the_file_and_key(tmp_path: Path, files: dict[str, Any], message: str) -> None:
    folder = _folder(tmp_path / "m", None, {"modules.json": MODULES, **files})
    with pytest.raises(ArtifactError, match=message):
        resolve_pooling(folder)


def test_a_pooling_path_outside_the_folder_is_refused(tmp_path: Path) -> None:
    modules = [MODULES[0], {**MODULES[1], "path": "../elsewhere"}]
    with pytest.raises(ArtifactError, match=r"modules\.json: the Pooling module's path '\.\./elsewhere'"):
        resolve_pooling(_folder(tmp_path / "m", None, {"modules.json": modules}))
    with pytest.raises(ArtifactError, match=r"modules\.json is not a list of modules"):
        resolve_pooling(_folder(tmp_path / "n", None, {"modules.json": {"0": "Transformer"}}))
