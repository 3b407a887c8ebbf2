"""What the explain tests share: the event tokens of a toy ``EventScorer``.

Imported by the test modules of this folder (pytest puts the folder on ``sys.path``).
"""

from __future__ import annotations

import torch


class ToyTokens:
    """Events as tokens ``x`` [1, n, d] with baseline tokens ``b``; a removed event takes its baseline token.

    Subclasses set ``x`` and ``b`` and define ``score_tokens``.
    """

    x: torch.Tensor
    b: torch.Tensor

    @property
    def n_events(self) -> int:
        return self.x.shape[1]

    def tokens(self) -> torch.Tensor:
        return self.x

    def baseline_tokens(self) -> torch.Tensor:
        return self.b

    def score_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_removed(self, removed: torch.Tensor) -> torch.Tensor:
        return self.score_tokens(torch.where(removed.unsqueeze(-1), self.b, self.x))
