"""Tests of core.model.network: shapes of every module, causality, padding invariance, the mask token, MMoE gates."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from core import schema as S
from core.data.batches import Batch, history_batch
from core.data.sequences import build_sequences, gap_bucket
from core.model.config import ModelConfig
from core.model.heads import EngagementHead, MMoE, RatingHead
from core.model.layers import Block, EventEmbedding, HistoryEncoder, ItemEncoder, TimeBias
from core.model.memory import GATE_SCALE
from core.model.network import BehaviorModel

T0 = 1_700_000_000
N_ITEMS, TEXT_DIM, D, H, DE, L = 7, 6, 8, 2, 4, 6


@pytest.fixture(scope="module")
def data():
    rows = []
    for u, n in (("long", 9), ("mid", 4), ("short", 2)):
        for k in range(n):
            rows.append(
                (
                    u,
                    f"i{(k * 3 + len(u)) % N_ITEMS}",
                    T0 + 37 * k * k + 5 * k,
                    ("view", "click", "rate")[k % 3],
                    4.0 if k % 3 == 2 else np.nan,
                )
            )
    frame = pd.DataFrame(rows, columns=[S.USER_ID, S.ITEM_ID, "_s", S.BEHAVIOR, S.VALUE])
    frame[S.TIMESTAMP] = pd.to_datetime(frame.pop("_s"), unit="s")
    out = build_sequences(frame, item_ids=[f"i{k}" for k in range(N_ITEMS)])
    assert out.n_items == N_ITEMS and list(out.users) == ["long", "mid", "short"]
    return out


def _cfg(data, **kw) -> ModelConfig:
    base = dict(
        n_items=data.n_items,
        n_behaviors=len(data.behaviors),
        text_dim=TEXT_DIM,
        d_model=D,
        n_heads=H,
        n_layers=2,
        max_len=L,
        dropout=0.1,
        n_experts=3,
        expert_dim=DE,
    )
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def model(data) -> BehaviorModel:
    torch.manual_seed(0)
    text = torch.randn(data.n_items + 1, TEXT_DIM)
    text[0] = 0
    m = BehaviorModel(_cfg(data), text).eval()
    with torch.no_grad():  # non-zero biases and slopes, so every path carries signal
        m.history.time_bias.log_slope.copy_(torch.tensor([-0.3, 0.2]))
        m.history.time_bias.day_slope.copy_(torch.tensor([0.1, -0.5]))
        m.events.mask_token.copy_(torch.randn(D))
        for emb in (m.events.behavior, m.events.value, m.events.gap, m.events.position):
            emb.weight.normal_(0, 1.0)
        m.engagement.item_bias.weight.normal_()
        m.rating.item_bias.weight.normal_()
        m.memory.proj.weight.normal_(0, 0.1)
        m.memory.behavior.weight.normal_()
        m.memory.value.weight.normal_()
        m.repeat.scale.fill_(0.7)
        m.repeat.behavior.weight.normal_(0, 0.2)
        m.repeat.distance.weight.normal_(0, 0.2)
        m.repeat.gate.weight.normal_(0, 0.5)
        m.repeat.gate.bias.fill_(1.0)
    return m


@pytest.fixture(scope="module")
def repeating(model) -> BehaviorModel:
    """The module's model, whose repeat path carries signal."""
    return model


def _batch(data, max_len: int = L, users=(0, 1, 2), ends=None) -> Batch:
    users = np.array(users)
    ends = data.offsets[users + 1] if ends is None else np.array(ends)
    return history_batch(data, users, ends, max_len)


def _states(model: BehaviorModel, batch: Batch, removed: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(model.tokens(batch), batch, removed)


# --- shapes ------------------------------------------------------------------------


def test_item_encoder_shapes(data, model) -> None:
    batch = _batch(data)
    assert model.items(batch.item).shape == (3, L, D)
    assert model.items(None).shape == (N_ITEMS + 1, D)
    assert model.items(torch.tensor([1, 2, 3])).shape == (3, D)
    enc = ItemEncoder(_cfg(data, use_text=False), torch.zeros(N_ITEMS + 1, TEXT_DIM))
    assert enc(batch.item).shape == (3, L, D)


def test_event_embedding_and_time_bias_shapes(data, model) -> None:
    batch = _batch(data)
    tokens = EventEmbedding(_cfg(data))(batch, model.items(batch.item))
    assert tokens.shape == (3, L, D)
    assert (tokens[~batch.mask] == 0).all()  # padding tokens are zero
    assert model.events.positions(L).shape == (L, D)
    bias = TimeBias(_cfg(data))(batch.ts, batch.mask)
    assert bias.shape == (3, H, L, L)


def test_block_history_encoder_mmoe_and_heads_shapes(data, model) -> None:
    cfg = _cfg(data)
    batch = _batch(data)
    x = torch.randn(3, L, D)
    bias = TimeBias(cfg)(batch.ts, batch.mask)
    assert Block(cfg)(x, bias).shape == (3, L, D)
    assert HistoryEncoder(cfg)(x, batch.ts, batch.mask).shape == (3, L, D)
    mix = MMoE(cfg)(x)
    assert len(mix) == 2 and all(m.shape == (3, L, DE) for m in mix)
    items = torch.randn(N_ITEMS + 1, D)
    head = EngagementHead(cfg)
    assert head(torch.randn(5, DE), items, None).shape == (5, N_ITEMS + 1)
    idx = torch.tensor([1, 2, 3, 4, 5])
    assert head(torch.randn(5, DE), items[idx], idx).shape == (5,)
    task_e, task_r = model(batch)
    assert RatingHead(cfg)(task_r[:, -1][:3], items[idx[:3]], idx[:3]).shape == (3,)


def test_behavior_model_shapes(data, model) -> None:
    batch = _batch(data)
    assert model.tokens(batch).shape == (3, L, D)
    # the transformer's states, then the memory, then the repeat evidence and its items (L each)
    assert _states(model, batch).shape == (3, L, 2 * D + 2 * L)
    with torch.no_grad():
        task_e, task_r = model(batch)
        assert task_e.shape == (3, L, DE + D + 2 * L)  # the engagement task state, the memory, the repeat path
        assert task_r.shape[:2] == (3, L)
        assert model.engagement_logits(task_e[:, -1]).shape == (3, N_ITEMS + 1)
        idx = torch.tensor([1, 4, 7])
        assert model.engagement_logits(task_e[:, -1], idx).shape == (3,)
        assert model.rating_of(task_r[:, -1], idx).shape == (3,)


def test_paired_logits_match_the_full_logit_table(data, model) -> None:
    batch = _batch(data)
    with torch.no_grad():
        task_e, _ = model(batch)
        full = model.engagement_logits(task_e[:, -1])  # [3, N+1]
        idx = torch.tensor([2, 5, 7])
        paired = model.engagement_logits(task_e[:, -1], idx)
    torch.testing.assert_close(paired, full[torch.arange(3), idx], rtol=1e-5, atol=1e-5)


# --- causality and padding -----------------------------------------------------------


@pytest.mark.parametrize("field, new", [("item", 3), ("behavior", 3), ("value", 7), ("ts", T0 + 10**7)])
def test_changing_a_later_event_leaves_earlier_states_unchanged(data, model, field: str, new: int) -> None:
    batch = _batch(data, users=(0,))  # user "long": 6 real events in the window, no padding
    assert batch.mask.all()
    before = _states(model, batch)
    changed = Batch(**{k: v.clone() for k, v in batch.__dict__.items() if v is not None})
    getattr(changed, field)[0, 3] = new
    assert not torch.equal(getattr(changed, field), getattr(batch, field))
    after = _states(model, changed)
    torch.testing.assert_close(after[:, :3], before[:, :3], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 3:], before[:, 3:], atol=1e-4)  # the change does reach later states


def _last_logits(model: BehaviorModel, batch: Batch) -> torch.Tensor:
    """Engagement logits [B, N+1] of the newest position, the repeat path included."""
    with torch.no_grad():
        task_e, _ = model(batch)
        return model.engagement_logits(task_e[:, -1])


def test_batch_neighbours_and_padding_length_do_not_change_the_last_state(data, repeating) -> None:
    model = repeating  # the repeat evidence is as wide as the batch: compare it through the logits
    together = _states(model, _batch(data))[..., : 2 * D]  # "mid" (4 events) is padded next to a full row
    alone = _states(model, _batch(data, users=(1,)))[..., : 2 * D]
    torch.testing.assert_close(together[1, -1], alone[0, -1], rtol=1e-5, atol=1e-5)
    short = _states(model, _batch(data, max_len=5, users=(1,)))[..., : 2 * D]  # one padding slot instead of two
    torch.testing.assert_close(short[0, -4:], alone[0, -4:], rtol=1e-5, atol=1e-5)
    logits = _last_logits(model, _batch(data))[1]
    torch.testing.assert_close(logits, _last_logits(model, _batch(data, users=(1,)))[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        logits, _last_logits(model, _batch(data, max_len=5, users=(1,)))[0], rtol=1e-5, atol=1e-5
    )


def test_the_newest_position_alone_equals_the_last_row_of_every_position(data, repeating) -> None:
    """``last=True`` computes the pairwise terms (attention, memory, repeat) for one row, not L: same numbers."""
    model, batch = repeating, _batch(data)
    removed = torch.zeros_like(batch.mask)
    removed[0, -2] = removed[1, -1] = True  # removed events change the memory and the repeat evidence
    for rm in (None, removed):
        with torch.no_grad():
            full_e, full_r = model(batch, rm)
            last_e, last_r = model(batch, rm, last=True)
            states = model.encode(model.tokens(batch), batch, rm, last=True)
        assert states.shape[1] == 1 and last_e.shape[0] == batch.item.shape[0]
        torch.testing.assert_close(last_e, full_e[:, -1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(last_r, full_r[:, -1], rtol=1e-5, atol=1e-5)
        logits = model.engagement_logits(last_e)
        torch.testing.assert_close(logits, model.engagement_logits(full_e[:, -1]), rtol=1e-5, atol=1e-5)


def test_left_padding_does_not_change_the_last_state(data, repeating) -> None:
    model = repeating
    unpadded = _states(model, _batch(data, max_len=4, users=(1,)))  # "mid": exactly 4 events
    padded = _states(model, _batch(data, max_len=L, users=(1,)))  # same 4 events + 2 padding slots
    assert _batch(data, max_len=4, users=(1,)).mask.all()
    torch.testing.assert_close(padded[0, -4:, : 2 * D], unpadded[0, :, : 2 * D], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        _last_logits(model, _batch(data, max_len=L, users=(1,))),
        _last_logits(model, _batch(data, max_len=4, users=(1,))),
        rtol=1e-5,
        atol=1e-5,
    )


def _repeat_twin(data, model: BehaviorModel, form: str) -> BehaviorModel:
    """The same weights with the repeat path in another form: "added term" (models saved before the mixture) or
    "summed mixture" (models saved before the compound evidence)."""
    settings = {"repeat_mix": False} if form == "added term" else {"repeat_evidence": "sum"}
    with torch.random.fork_rng():  # the module's later tests draw from the global generator
        twin = BehaviorModel(_cfg(data, **settings), model.items.text, model.items.text_of)
    gated = twin.repeat is not None and twin.repeat.gate is not None
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if gated or not k.startswith("repeat.gate")})
    return twin.eval()


@pytest.mark.parametrize("form", ["mixture", "summed mixture", "added term"])
def test_the_repeat_path_raises_exactly_the_items_in_the_history(data, repeating, form: str) -> None:
    """Only items of the user's earlier events get a repeat logit; a removed event gives none."""
    assert repeating.repeat is not None and repeating.repeat.compound  # the compound mixture by default
    repeating = repeating if form == "mixture" else _repeat_twin(data, repeating, form)
    batch = _batch(data, users=(1,))  # "mid": 4 events
    with torch.random.fork_rng():  # the module's later tests draw from the global generator
        plain = BehaviorModel(_cfg(data, use_repeat=False), repeating.items.text, repeating.items.text_of)
    plain.load_state_dict({k: v for k, v in repeating.state_dict().items() if not k.startswith("repeat.")})
    plain.eval()
    gain = _last_logits(repeating, batch) - _last_logits(plain, batch)  # [1, N+1]
    seen = set(batch.item[0][batch.mask[0]].tolist())
    if form == "added term":
        assert all(gain[0, j] > 0 for j in seen)
    else:  # log(e^explore + e^repeat): never lower, and higher unless the explore logit dwarfs the repeat one
        assert all(gain[0, j] >= 0 for j in seen) and any(gain[0, j] > 1e-3 for j in seen)
    assert all(abs(gain[0, j]) < 1e-6 for j in range(1, N_ITEMS + 1) if j not in seen)
    removed = torch.zeros_like(batch.mask)
    removed[0, -1] = True  # the newest event: its item gets no evidence from it
    with torch.no_grad():
        task_e, _ = repeating(batch, removed)
        without = repeating.engagement_logits(task_e[:, -1])
    newest = int(batch.item[0, -1])
    if newest not in set(batch.item[0, :-1][batch.mask[0, :-1]].tolist()):
        assert without[0, newest] <= _last_logits(repeating, batch)[0, newest]
        assert without[0, newest] < _last_logits(repeating, batch)[0, newest] or form != "added term"


def test_compound_evidence_adds_each_event_to_the_items_repeat_log_odds(data, repeating) -> None:
    """With the gate at the explore logit, the compound mixture is explore + E exactly: evidence adds up, so
    removing one of an item's events lowers its logit by that event's weight, whatever else the item has.
    The summed mixture (log of summed e^w) gives the same item's lone event all of its repeat mass."""
    path = repeating.repeat
    items = torch.tensor([[1, 1, 1, 2]])  # three events of item 1, one of item 2; items 0 and 3 none
    weights = torch.tensor([[0.4, 1.5, 0.2, 0.7]])
    state = torch.randn(1, DE)
    with torch.no_grad():
        gate = float(path.gate(state))
        explore = torch.full((1, 4), gate)  # [P=1, 4 items]
        logits = path.combine(explore, weights, items, None, state)
        expected = torch.tensor([[0.0, 0.4 + 1.5 + 0.2, 0.7, 0.0]]) + gate
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        for k in range(3):  # each of item 1's events: its own weight, exactly
            fewer = weights.clone()
            fewer[0, k] = 0
            lower = path.combine(explore, fewer, items, None, state)
            assert float(logits[0, 1] - lower[0, 1]) == pytest.approx(float(weights[0, k]), abs=1e-5)
        paired = path.combine(explore[:, 1], weights, items, torch.tensor([1]), state)
        assert float(paired[0]) == pytest.approx(float(logits[0, 1]), abs=1e-5)  # one candidate: the same logit
        summed = _repeat_twin(data, repeating, "summed mixture").repeat
        old = summed.combine(explore, weights, items, None, state) - gate  # log(1 + E): the mass follows the sum
        torch.testing.assert_close(old, torch.log1p(torch.tensor([[0.0, 2.1, 0.7, 0.0]])), rtol=1e-5, atol=1e-5)


def test_padding_keys_are_masked_in_the_time_bias(data) -> None:
    batch = _batch(data)
    bias = TimeBias(_cfg(data))(batch.ts, batch.mask)  # [B, H, L, L]
    future = torch.ones(L, L, dtype=torch.bool).triu(1)
    assert torch.isinf(bias[:, :, future]).all()
    assert torch.isfinite(bias.diagonal(dim1=-2, dim2=-1)).all()  # a row is never empty
    pad_keys = ~batch.mask[2]  # "short": 4 padding slots
    real_queries = batch.mask[2]
    sub = bias[2][:, real_queries][:, :, pad_keys]
    assert torch.isinf(sub).all() and (sub < 0).all()


# --- removed events ------------------------------------------------------------------


def test_removed_events_use_the_mask_token(data, model) -> None:
    batch = _batch(data)
    removed = torch.zeros_like(batch.mask)
    removed[0, 2] = removed[1, -1] = True
    tokens = model.tokens(batch).detach()
    manual = tokens.clone()
    manual[removed] = model.events.mask_token.detach()
    with torch.no_grad():
        via_flag = model.encode(tokens, batch, removed)
        via_tokens = model.encode(manual, batch)
    torch.testing.assert_close(via_flag, via_tokens, rtol=0, atol=0)
    assert not torch.allclose(via_flag, _states(model, batch), atol=1e-4)


def test_removed_event_content_no_longer_matters(data, model) -> None:
    batch = _batch(data, users=(0,))
    removed = torch.zeros_like(batch.mask)
    removed[0, 2] = True
    other = Batch(**{k: v.clone() for k, v in batch.__dict__.items() if v is not None})
    other.item[0, 2], other.behavior[0, 2], other.value[0, 2] = 1, 2, 9
    torch.testing.assert_close(_states(model, batch, removed), _states(model, other, removed), rtol=0, atol=1e-6)


# --- MMoE ------------------------------------------------------------------------------


def test_mmoe_gates_sum_to_one_and_mix_the_experts(data) -> None:
    torch.manual_seed(1)
    mmoe = MMoE(_cfg(data))
    state = torch.randn(3, L, D)
    outputs = mmoe(state)
    experts = mmoe.experts(state).unflatten(-1, (3, DE))  # [B, L, E, De]
    for gate, out in zip(mmoe.gates, outputs):
        weights = gate(state).softmax(-1)  # [B, L, E]
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, L))
        assert (weights > 0).all()
        torch.testing.assert_close(out, (weights.unsqueeze(-1) * experts).sum(-2))


def test_mmoe_with_identical_experts_returns_that_expert(data) -> None:
    mmoe = MMoE(_cfg(data))
    with torch.no_grad():
        lin = mmoe.experts[0]
        lin.weight.copy_(lin.weight[:DE].repeat(3, 1))  # every expert is the same linear map
        lin.bias.copy_(lin.bias[:DE].repeat(3))
        for gate in mmoe.gates:
            gate.weight.normal_(0, 3.0)  # very different gates
    state = torch.randn(2, 5, D)
    expected = torch.nn.functional.gelu(state @ lin.weight[:DE].T + lin.bias[:DE])
    for out in mmoe(state):
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_model_config_round_trips_through_a_dict(data) -> None:
    cfg = _cfg(data)
    assert ModelConfig(**cfg.to_dict()) == cfg


# --- request time --------------------------------------------------------------------


@pytest.fixture(scope="module")
def timed(data) -> BehaviorModel:
    """The model with request-time conditioning on (the default) and a one-hour request gap."""
    torch.manual_seed(0)
    m = BehaviorModel(_cfg(data, use_request_time=True, request_gap=3600.0), torch.randn(data.n_items + 1, TEXT_DIM))
    with torch.no_grad():
        m.history.time_bias.log_slope.copy_(torch.tensor([-0.3, 0.2]))
        m.request.gap.weight.normal_(0, 1.0)
    return m.eval()


def test_request_times_default_to_the_next_event_and_the_gap_after_the_last(data, timed) -> None:
    model = timed
    batch = _batch(data, users=(0,))
    now = model.request.times(batch)
    np.testing.assert_array_equal(now[0, :-1].numpy(), batch.ts[0, 1:].numpy())
    assert now[0, -1].item() == batch.ts[0, -1].item() + int(model.cfg.request_gap)
    bare = Batch(**{k: v for k, v in batch.__dict__.items() if k != "request_ts"})  # hand-built: no request times
    torch.testing.assert_close(model.request.times(bare), now)


def test_the_request_time_changes_only_its_own_position(data, timed) -> None:
    model = timed
    batch = _batch(data, users=(0,))
    later = Batch(**{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.__dict__.items()})
    later.request_ts[0, -1] = batch.ts[0, -1] + 30 * 86400  # asked a month after the last event
    with torch.no_grad():
        a_e, a_r = model(batch)
        b_e, b_r = model(later)
    torch.testing.assert_close(a_e[:, :-1], b_e[:, :-1])
    assert not torch.allclose(a_e[:, -1], b_e[:, -1])
    assert not torch.allclose(a_r[:, -1, :-2], b_r[:, -1, :-2])


def test_without_request_time_the_state_ignores_it(data) -> None:
    torch.manual_seed(0)
    plain = BehaviorModel(_cfg(data, use_request_time=False), torch.randn(data.n_items + 1, TEXT_DIM)).eval()
    batch = _batch(data, users=(0,))
    later = Batch(**{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.__dict__.items()})
    later.request_ts[0, -1] = batch.ts[0, -1] + 30 * 86400
    with torch.no_grad():
        torch.testing.assert_close(plain(batch)[0], plain(later)[0])


# --- behavior memory -------------------------------------------------------------------


def test_behavior_memory_is_the_age_weighted_sum_of_earlier_events(data, model) -> None:
    batch = _batch(data, users=(0,))
    tokens = model.tokens(batch).detach()
    memory, mask_token = model.memory, model.events.mask_token.detach()
    with torch.no_grad():
        out = memory(tokens, batch, batch.ts, mask_token)[0]  # [L, D]
        values = memory.proj(tokens[0] - mask_token)  # [L, D]
    for q in range(L):
        expected = torch.zeros(D)
        for k in range(q + 1):
            if batch.mask[0, k]:
                g = int(gap_bucket(batch.ts[0, q] - batch.ts[0, k]))
                logit = GATE_SCALE * (
                    memory.behavior.weight[batch.behavior[0, k], g] + memory.value.weight[batch.value[0, k], g]
                )
                expected += torch.nn.functional.softplus(logit) * values[k]
        torch.testing.assert_close(out[q], expected, rtol=1e-5, atol=1e-5)


def test_behavior_memory_adds_evidence_where_attention_averages(data, model) -> None:
    """The same event twice counts twice in the memory (attention would average it away),
    and a removed event (the mask token) adds nothing."""
    memory, mask_token = copy.deepcopy(model.memory), model.events.mask_token.detach()
    with torch.no_grad():  # a behavior with a clearly non-zero weight, whatever the fixture drew
        memory.behavior.weight[1] = 0.25
        memory.value.weight[0] = 0.0
    full = _batch(data, users=(0,))
    x, y = torch.randn(1, 1, D), torch.randn(1, 1, D)

    def run(tokens: torch.Tensor, n: int) -> torch.Tensor:
        batch = Batch(**{k: v[:, :n].clone() for k, v in full.__dict__.items() if v is not None})
        batch.behavior[:] = 1
        batch.value[:] = 0
        batch.ts[:] = torch.tensor([T0] * (n - 1) + [T0 + 60])
        with torch.no_grad():
            return memory(tokens, batch, batch.ts, mask_token)[0, -1]

    twice, once, neither = run(torch.cat([x, x, y], 1), 3), run(torch.cat([x, y], 1), 2), run(y, 1)
    torch.testing.assert_close(twice - neither, 2 * (once - neither), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(once, neither, atol=1e-3)
    masked = run(torch.cat([mask_token.view(1, 1, D), y], 1), 2)
    torch.testing.assert_close(masked, neither, rtol=0, atol=1e-6)


def test_a_new_memory_is_silent_and_the_memory_can_be_switched_off(data) -> None:
    torch.manual_seed(0)
    text = torch.randn(data.n_items + 1, TEXT_DIM)
    batch = _batch(data)
    fresh = BehaviorModel(_cfg(data), text).eval()
    with torch.no_grad():
        states = fresh.encode(fresh.tokens(batch), batch)
    assert states.shape == (3, L, 2 * D + 2 * L) and torch.count_nonzero(states[..., D : 2 * D]) == 0  # V = 0
    assert fresh.repeat is not None
    plain = BehaviorModel(_cfg(data, use_memory=False, use_repeat=False), text).eval()
    assert plain.memory is None and not any(k.startswith(("memory.", "repeat.")) for k in plain.state_dict())
    with torch.no_grad():
        task_e, _ = plain(batch)
    assert task_e.shape == (3, L, DE) and plain.engagement_logits(task_e[:, -1]).shape == (3, N_ITEMS + 1)
    no_memory = BehaviorModel(_cfg(data, use_memory=False), text).eval()  # the repeat path alone
    with torch.no_grad():
        task_e, _ = no_memory(batch)
    assert task_e.shape == (3, L, DE + 2 * L) and no_memory.engagement_logits(task_e[:, -1]).shape == (3, N_ITEMS + 1)
