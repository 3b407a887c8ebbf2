"""User-level differentially private training (DP-SGD), accounted by Opacus's RDP accountant.

One training example is one user's training window, and each user has exactly one, so the
example-level guarantee of DP-SGD is user-level here: the released model is (ε, δ)-close to
one trained without any given user. Each step:

1. samples users by Poisson sampling: each training user independently, at rate
   q = batch_size / users (a step may have no user, and still adds noise);
2. computes every sampled user's gradient on their own (the model's masks and per-item
   evidence are data-dependent shapes, which vectorized per-sample gradients cannot take),
   clips its norm over all trained parameters to ``max_grad_norm`` C;
3. adds Gaussian noise N(0, (σ C)^2) to the sum and divides by the expected batch size q N.

σ is the smallest noise multiplier for which Opacus's RDP accountant gives the target ε after
all the planned steps; the ε stored with the run is the accountant's for the steps taken, so a
cancelled run reports what it spent. The sampling and the noise come from generators seeded by the
operating system's random source, never by the run's seed (stored with it: whoever knows it could
replay both), so a private run does not reproduce bit for bit; the generators themselves are numpy's
and torch's, not a cryptographically secure one (Opacus's ``secure_mode``).

Everything else that would learn from the same users is shut off or refused (``check_settings`` of
:mod:`core.model.config` refuses the settings, :class:`~core.model.recommender.Recommender` fixes the rest):
the rating refit, checkpoint selection on validation events (the last epoch is kept), the
rating standardization and the stand-in request gap (fixed values, not the data's), and the
choice of whether earlier items stay candidates (it must be set). The item catalogue and its
text are treated as public.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from core.errors import DataError
from core.model.distributed import Group

ACCOUNTANT = "rdp"  # Opacus's Renyi-DP accountant (imported when used: opacus takes 1.5 s to import)
# Renyi orders: Opacus's defaults (up to 63) and higher ones, which give the tighter bound at low noise
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + list(range(64, 257, 8))


def refuse_unprivate_modules(*modules: nn.Module) -> None:
    """Batch normalization mixes users inside a batch: a user's gradient then depends on the others."""
    for module in modules:
        for name, sub in module.named_modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                raise DataError(
                    f"module {name or type(module).__name__} ({type(sub).__name__}) cannot be trained privately: "
                    "batch normalization mixes the users of a batch; use layer normalization"
                )


@dataclass(frozen=True)
class PrivacyPlan:
    """The noise and sampling of a private run, fixed before its first step."""

    epsilon: float  # the target
    delta: float
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int
    epochs: int
    users: int

    def spent(self, steps: int) -> float:
        """The ε the accountant gives after ``steps`` steps (0 before the first)."""
        if steps <= 0:
            return 0.0
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, steps)]
        return float(accountant.get_epsilon(self.delta, alphas=ALPHAS))

    def summary(self, epochs_done: int) -> dict[str, Any]:
        """What ``metrics.json`` stores: the ε spent by the epochs done, the target and the mechanism."""
        steps = epochs_done * self.steps_per_epoch
        return {
            "epsilon": self.spent(steps),
            "epsilon_target": self.epsilon,
            "delta": self.delta,
            "max_grad_norm": self.max_grad_norm,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": steps,
            "users": self.users,
            "accountant": ACCOUNTANT,
        }


def privacy_label(summary: Mapping[str, Any] | None) -> str | None:
    """How the pages and exports name a private run ("trained with DP, ε = 7.99, δ = 0.00106"); None otherwise."""
    if not summary or summary.get("epsilon") is None:
        return None
    return f"trained with DP, ε = {float(summary['epsilon']):.3g}, δ = {float(summary['delta']):.3g}"


def plan_privacy(privacy: Mapping[str, Any], users: int, batch_size: int, epochs: int) -> PrivacyPlan:
    """The noise multiplier that spends ``privacy["epsilon"]`` over ``epochs`` of ``users / batch_size`` steps."""
    from opacus.accountants.utils import get_noise_multiplier

    if users < 2:
        raise DataError(f"private training needs at least 2 users with 2+ training events, got {users}")
    rate = min(1.0, batch_size / users)
    steps_per_epoch = max(1, round(1 / rate))
    delta = privacy.get("delta") or 1.0 / users
    epsilon = float(privacy["epsilon"])
    try:
        with warnings.catch_warnings():  # the search tries noise levels far from the answer, where Opacus
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")  # asks for more orders
            sigma = get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=rate,
                steps=steps_per_epoch * epochs,
                accountant=ACCOUNTANT,
                epsilon_tolerance=epsilon / 100,  # within 1% below the target, whatever its size
                alphas=ALPHAS,
            )
    except ValueError as exc:
        raise DataError(
            f"setting privacy.epsilon={epsilon}: no noise level reaches it with delta {delta:.3g} over {epochs} "
            f"epoch(s) at sampling rate {rate:.3g} ({exc}); raise epsilon, or lower epochs or batch_size"
        ) from exc
    return PrivacyPlan(
        epsilon=epsilon,
        delta=float(delta),
        max_grad_norm=float(privacy.get("max_grad_norm", 1.0)),
        noise_multiplier=float(sigma),
        sample_rate=rate,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        users=users,
    )


class NoisySum:
    """The clipped per-user gradients of one step, summed; :meth:`release` adds the noise and sets ``.grad``."""

    def __init__(self, params: list[nn.Parameter], plan: PrivacyPlan, generator: torch.Generator) -> None:
        self.params, self.plan, self.generator = params, plan, generator
        self.total = [torch.zeros_like(p) for p in params]

    def add(self, loss: torch.Tensor) -> float:
        """Add one user's gradient of ``loss``, clipped to the bound; its norm before clipping."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        present = [g.detach() for g in grads if g is not None]
        # one device sync per user, not one per parameter
        norm = (
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present])))
            if present
            else 0.0
        )
        factor = min(1.0, self.plan.max_grad_norm / (norm + 1e-6))
        for acc, g in zip(self.total, grads):
            if g is not None:
                acc.add_(g.detach(), alpha=factor)
        return norm

    def release(self, group: Group | None = None) -> None:
        """Noise N(0, (σ C)^2) on the sum, divided by the expected batch size, as each parameter's gradient. In
        several processes (``group``) the sums are first added up over the ranks; each rank's generator draws the
        same noise, so every rank sets the same gradients and the sum gets the noise once."""
        if group is not None:
            flat = torch.cat([acc.flatten() for acc in self.total])
            dist.all_reduce(flat)
            self.total = [
                part.view_as(acc) for part, acc in zip(flat.split([a.numel() for a in self.total]), self.total)
            ]
        std = self.plan.noise_multiplier * self.plan.max_grad_norm
        expected = self.plan.sample_rate * self.plan.users
        for p, acc in zip(self.params, self.total):
            noise = torch.randn(acc.shape, generator=self.generator, device="cpu").to(acc.device, acc.dtype)
            p.grad = (acc + std * noise) / expected
