"""The fast paths of the network equal the plain computations they replace.

Each is checked against a direct, obviously correct version: the CPU attention against torch's fused kernel,
the sort-based last occurrences against a loop over positions, the projection of distinct items and event texts
against projecting every position, float32 gap buckets against float64 logarithms, and the rating refit's
cached validation RMSE against a full evaluation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.data.sequences import GAP_BUCKETS, gap_bucket
from core.model.config import ModelConfig
from core.model.layers import EventText, ItemEncoder, attention
from core.model.repeat import last_occurrences


def test_cpu_attention_equals_the_fused_kernel_forward_and_backward() -> None:
    torch.manual_seed(0)
    b, h, length, dh = 3, 2, 9, 4
    q, k, v = (torch.randn(b, h, length, dh, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(b, h, length, length, dtype=torch.float64)
    bias = bias.masked_fill(~torch.ones(length, length, dtype=torch.bool).tril(), float("-inf"))
    bias.requires_grad_()
    ours = attention(q, k, v, bias)
    grads = torch.autograd.grad(ours.pow(2).sum(), (q, k, v, bias))
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    expected = torch.autograd.grad(fused.pow(2).sum(), (q, k, v, bias))
    torch.testing.assert_close(ours, fused)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    # the newest query alone: the last row of the whole
    torch.testing.assert_close(attention(q[:, :, -1:], k, v, bias[:, :, -1:]), ours[:, :, -1:])


def _last_by_loop(items: torch.Tensor, allowed: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    b, length = items.shape
    lq = allowed.shape[1]
    last = np.zeros((b, lq, length))
    rank = np.zeros((b, lq, length), dtype=np.int64)
    for r in range(b):
        for i in range(lq):  # position length - lq + i
            there = [k for k in range(length) if allowed[r, i, k]]
            newest = {int(items[r, k]): k for k in there}  # each item's last event up to that position
            for k in newest.values():
                last[r, i, k] = 1
                rank[r, i, k] = len({item for item, at in newest.items() if at > k})
    return last, rank


@pytest.mark.parametrize("lq", [12, 1])
def test_last_occurrences_match_a_loop_over_positions(lq: int) -> None:
    gen = torch.Generator().manual_seed(3)
    b, length = 4, 12
    items = torch.randint(1, 5, (b, length), generator=gen)
    there = torch.rand(b, length, generator=gen) > 0.2
    items = torch.where(there, items, -1 - torch.arange(length).expand(b, length))  # absent: matches nothing
    causal = torch.ones(length, length, dtype=torch.bool).tril()[length - lq :]
    allowed = causal & there.unsqueeze(1)
    last, rank = last_occurrences(items, allowed)
    want_last, want_rank = _last_by_loop(items, allowed)
    np.testing.assert_array_equal(last.numpy(), want_last)
    np.testing.assert_array_equal((rank * last.long()).numpy(), want_rank)


def _cfg(n_items: int = 100) -> ModelConfig:
    return ModelConfig(n_items=n_items, n_behaviors=3, text_dim=6, d_model=8, n_heads=2)


def test_item_encoder_projects_distinct_items_as_it_projects_every_position() -> None:
    torch.manual_seed(0)
    enc = ItemEncoder(_cfg(), torch.randn(101, 6))
    idx = torch.randint(0, 101, (7, 30))  # 210 indices, above the distinct-item threshold, with repeats
    out = enc(idx)
    direct = enc.proj(enc.text[idx]) + enc.id_emb(idx)
    torch.testing.assert_close(out, direct)
    out.pow(2).sum().backward()
    got = enc.id_emb.weight.grad.clone()
    enc.zero_grad()
    direct.pow(2).sum().backward()
    torch.testing.assert_close(got, enc.id_emb.weight.grad)


def test_event_text_projects_each_distinct_text_once() -> None:
    torch.manual_seed(0)
    part = EventText(_cfg())
    part.set_table(torch.randn(5, 6))
    with torch.no_grad():
        part.no_text.copy_(torch.randn(8))
    rows = torch.tensor([[0, 3, 3, 1], [4, 0, 0, 3]])
    direct = torch.where((rows > 0).unsqueeze(-1), part.proj(part.table[rows]), part.no_text)
    torch.testing.assert_close(part(rows), direct)


def test_gap_buckets_equal_float64_logarithms_below_2_to_the_24_and_agree_between_numpy_and_torch() -> None:
    small = np.concatenate([np.arange(0, 70_000), 2 ** np.arange(17, 24) - 1, 2 ** np.arange(17, 24)])
    exact = np.minimum(1 + np.floor(np.log2(small.astype(np.float64) + 1)), GAP_BUCKETS - 1).astype(np.int64)
    np.testing.assert_array_equal(gap_bucket(small), exact)
    large = np.random.default_rng(0).integers(0, 2**42, 50_000)
    np.testing.assert_array_equal(gap_bucket(torch.from_numpy(large)).numpy(), gap_bucket(large))
    # a float age (the network's pair ages) buckets as its integer seconds do
    np.testing.assert_array_equal(gap_bucket(torch.from_numpy(small).float()).numpy(), exact)


def test_refit_validation_rmse_on_cached_inputs_equals_the_evaluation(tiny_bert_dir) -> None:
    from tiny_support import TINY_MODEL  # tests/tiny_support.py

    from core.data import synth
    from core.model.evaluation import evaluate_split
    from core.model.rating_refit import valid_ratings, valid_rmse
    from core.model.recommender import Recommender

    data = synth.generate(synth.SynthConfig.small(3, n_users=30, n_items=20, target_events=900))
    train = {"epochs": 1, "batch_size": 16, "threads": 1, "rating_refit_epochs": 0}
    rec = Recommender(encoder=str(tiny_bert_dir), device="cpu", model=dict(TINY_MODEL), train=train)
    rec.fit(data.events, data.items)
    fitted = rec.fitted()
    expected = evaluate_split(fitted, "valid")["RMSE"]
    got = valid_rmse(fitted, valid_ratings(fitted))
    assert math.isfinite(expected) and got == pytest.approx(expected, rel=1e-5)
