"""DisARM (Dong, Mnih & Tucker 2020): ARM Rao-Blackwellized over u given the pair; unbiased, and
its variance never exceeds ARM's. Two decoder passes.

With the antithetic pair b1, b2 of vae.estimators.binary.arm:

    grad_phi = 1/2 (f(b1) - f(b2)) 1[b1 != b2] (-1)^{b2} sigmoid(|phi|),  per coordinate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vae.estimators.binary.arm import ARM


class DisARM(ARM):
    name = "disarm"

    def coordinate_weights(self, u: Tensor, b1: Tensor, b2: Tensor, logits: Tensor) -> Tensor:
        """1/2 1[b1 != b2] (-1)^{b2} sigmoid(|phi|): where the pair agrees, no gradient."""
        sign = 1 - 2 * b2  # (-1)^{b2}
        return 0.5 * (b1 != b2).to(b1.dtype) * sign * torch.sigmoid(logits.abs())
