"""The item text table holds each distinct text's vector once, with each item's row of it
(core.model.layers.ItemEncoder): the same representations as a row per item, and models saved with a row per item
still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.model.checkpoint import _network
from core.model.config import ModelConfig
from core.model.encoder import TextEncoder
from core.model.item_table import encode_items
from core.model.layers import ItemEncoder


def test_each_distinct_text_is_encoded_and_held_once(tiny_bert_dir: Path) -> None:
    texts = ["red shoe", "", "red shoe", "blue hat", ""]
    table, text_of, _ = encode_items(str(tiny_bert_dir), texts, None, "cpu", None)
    assert table.shape[0] == 1 + 3  # padding + three distinct texts
    assert text_of.tolist() == [0, 1, 2, 1, 3, 2]  # item 0 (padding) is row 0; equal texts share a row
    assert not table[0].any()
    alone = TextEncoder(str(tiny_bert_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(table[text_of[1:]].numpy(), alone, atol=1e-6)  # each item's own text's vector


def _cfg(**kw: object) -> ModelConfig:
    return ModelConfig(n_items=6, n_behaviors=3, text_dim=5, d_model=8, n_heads=2, **kw)  # type: ignore[arg-type]


def test_shared_rows_give_the_representations_of_a_row_per_item() -> None:
    torch.manual_seed(0)
    distinct = torch.randn(4, 5)
    distinct[0] = 0
    text_of = torch.tensor([0, 1, 2, 1, 3, 3, 2])
    shared = ItemEncoder(_cfg(), distinct, text_of)
    per_item = ItemEncoder(_cfg(), distinct[text_of])  # no text_of: a row per item
    per_item.load_state_dict({**shared.state_dict(), "text": distinct[text_of], "text_of": torch.arange(7)})
    torch.testing.assert_close(shared(None), per_item(None))
    some = torch.tensor([[3, 1, 6], [2, 2, 5]])
    torch.testing.assert_close(shared(some), per_item(some))
    torch.testing.assert_close(shared.vectors(), distinct[text_of])
    vectors = torch.randn(2, 5)  # a fine-tuned encoder's live vectors for items 1 and 3 (which share a row)
    with shared.replacing(torch.tensor([1, 4]), vectors), per_item.replacing(torch.tensor([1, 4]), vectors):
        torch.testing.assert_close(shared(None), per_item(None))
        assert not torch.allclose(shared(torch.tensor([1])), shared(torch.tensor([3])))  # item 3 keeps its row


def test_a_model_saved_with_a_row_per_item_loads() -> None:
    cfg = _cfg()
    state = {"items.text": torch.randn(7, 5)}  # a model file from before the shared rows: no items.text_of
    model = _network({"model_config": cfg.to_dict()}, state, Path("run"))
    assert model.items.text_of.tolist() == list(range(7))
    torch.testing.assert_close(model.items.vectors(), state["items.text"])
