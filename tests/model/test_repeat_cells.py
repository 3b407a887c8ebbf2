"""The repeat path's two ways to the same logits (core.model.repeat): dense passes over [rows, candidates] for a few
candidates, each row's history cells for many; values and gradients agree, over every item and over shared
candidates, for the compound and summed mixtures and the added term."""

from __future__ import annotations

import pytest
import torch

from core.model import repeat
from core.model.config import ModelConfig


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize(("mix", "evidence"), [(True, "compound"), (True, "sum"), (False, "compound")])
def test_dense_and_history_cells_agree(monkeypatch: pytest.MonkeyPatch, shared: bool, mix: bool, evidence: str) -> None:
    torch.manual_seed(0)
    n1, rows, lk = 40, 6, 12
    path = repeat.RepeatPath(
        ModelConfig(n_items=n1 - 1, n_behaviors=4, text_dim=8, repeat_mix=mix, repeat_evidence=evidence)
    )
    if path.gate is not None:
        torch.nn.init.normal_(path.gate.weight)
    weights = torch.rand(rows, lk) * 3 * (torch.rand(rows, lk) < 0.7)
    items = torch.where(weights != 0, torch.randint(1, 9, (rows, lk)), 0)  # few distinct items: repeats in a row
    candidates = torch.tensor([1, 2, 5, 7, 20, 33]) if shared else None
    explore = torch.randn(rows, len(candidates) if shared else n1)
    state = torch.randn(rows, 64)
    outs = []
    for dense_up_to in (1e9, 0.0):
        monkeypatch.setattr(repeat, "DENSE_UP_TO", dense_up_to)
        e, w, s = (t.clone().requires_grad_() for t in (explore, weights, state))
        out = path.combine(e, w, items, candidates, s, shared)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append((out.detach(), e.grad, w.grad, s.grad))
    changed = (outs[0][0] != explore).any()
    assert changed  # the history moved some logits
    for dense, cells in zip(*outs):
        if dense is None:  # the added term has no gate
            assert cells is None
            continue
        # the added term's dense form also passes a gradient to absent events' zero evidence (no effect on the model)
        mask = (weights != 0) if dense.shape == weights.shape and not mix else torch.ones_like(dense, dtype=torch.bool)
        torch.testing.assert_close(dense[mask], cells[mask], rtol=1e-5, atol=1e-6)
