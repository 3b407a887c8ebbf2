"""The lazy item-table update (core.model.optimizer.RowAdamW): AdamW itself where a step reads every row, only the
rows read otherwise, AdamW's state layout, and the switch that makes the item-ID gradient sparse."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.model.optimizer import RowAdamW, use_row_updates


def _tables(seed: int = 0) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(seed)
    dense = nn.Embedding(12, 4)
    sparse = copy.deepcopy(dense)
    sparse.sparse = True
    return dense, sparse


def _loss(table: nn.Embedding, idx: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((table(idx) - target) ** 2).sum()


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_a_step_that_reads_every_row_is_adamw(decay: float) -> None:
    dense, sparse = _tables()
    ref = torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=decay)
    lazy = RowAdamW(sparse.parameters(), lr=0.05, weight_decay=decay)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        idx = torch.cat([torch.arange(12), torch.randint(0, 12, (20,), generator=gen)])  # every row, some twice
        target = torch.randn(len(idx), 4, generator=gen)
        for table, opt in ((dense, ref), (sparse, lazy)):
            opt.zero_grad()
            _loss(table, idx, target).backward()
            opt.step()
    assert sparse.weight.grad is not None and sparse.weight.grad.is_sparse
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lazy.state[sparse.weight]["exp_avg_sq"], ref.state[dense.weight]["exp_avg_sq"])


def _read_rows_1_2_then_5_once(table: nn.Embedding, opt: torch.optim.Optimizer) -> None:
    """Three steps reading rows 1 and 2; after the first, one step reading row 5 alone."""
    for step in range(3):
        for idx in [[1, 2, 2], [5]] if step == 0 else [[1, 2, 2]]:
            opt.zero_grad()
            _loss(table, torch.tensor(idx), torch.ones(len(idx), 4)).backward()
            opt.step()


def test_rows_a_step_does_not_read_stay_as_they_are() -> None:
    dense, sparse = _tables()
    before = sparse.weight.detach().clone()
    _read_rows_1_2_then_5_once(sparse, RowAdamW(sparse.parameters(), lr=0.05, weight_decay=0.0))
    moved = (sparse.weight.detach() != before).any(1)
    assert moved.tolist() == [i in (1, 2, 5) for i in range(12)]
    # row 5 was read once: dense AdamW's momentum keeps moving it on the later steps
    _read_rows_1_2_then_5_once(dense, torch.optim.AdamW(dense.parameters(), lr=0.05, weight_decay=0.0))
    assert not torch.allclose(dense.weight[5], sparse.weight[5])
    torch.testing.assert_close(dense.weight[3], sparse.weight[3])  # never read: as it was, either way


def test_its_state_loads_into_adamw_and_back() -> None:
    _, sparse = _tables()
    lazy = RowAdamW(sparse.parameters(), lr=0.05)
    _loss(sparse, torch.tensor([0, 3]), torch.ones(2, 4)).backward()
    lazy.step()
    dense = copy.deepcopy(sparse)
    dense.sparse = False
    ref = torch.optim.AdamW(dense.parameters(), lr=0.05)
    ref.load_state_dict(lazy.state_dict())
    assert float(ref.state[dense.weight]["step"]) == 1.0
    again = RowAdamW(sparse.parameters(), lr=0.05)
    again.load_state_dict(ref.state_dict())
    torch.testing.assert_close(again.state[sparse.weight]["exp_avg"], lazy.state[sparse.weight]["exp_avg"])


@pytest.mark.parametrize(
    ("sampled", "private", "processes", "lazy_above", "expected"),
    [
        (True, False, 1, 3, True),
        (False, False, 1, 3, False),
        (True, True, 1, 3, False),
        (True, False, 2, 3, False),
        (True, False, 1, 4, False),  # a catalogue of 4 items: not above 4
        (True, False, 1, None, False),  # the default: above 50,000 items
    ],
)
def test_only_a_sampled_loss_over_a_large_catalogue_in_one_process_makes_the_item_gradient_sparse(
    sampled: bool, private: bool, processes: int, lazy_above: int | None, expected: bool
) -> None:
    table = nn.Embedding(5, 2, sparse=not expected)  # padding + 4 items
    extra = {} if lazy_above is None else {"lazy_above": lazy_above}
    assert use_row_updates(table, sampled, private, processes, **extra) is expected
    assert table.sparse is expected
