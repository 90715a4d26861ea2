"""Exact: E_q[f(z)] = sum_c q(c|x) f(c) over every code c, the reference gradient.

Enumerates all K^N codes, so it is for small latents only (K^N <= 2^14), and costs K^N decoder
passes per image: the ground truth against which vae.diagnose measures every other estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vae.estimators.base import Cost, Estimator
from vae.validation import InvalidValue

MAX_CODES = 2**14


def all_codes(num_variables: int, num_classes: int, device: torch.device | str = "cpu") -> Tensor:
    """Every one-hot code, (K^N, N, K), in lexicographic order of the class indices."""
    classes = torch.arange(num_classes, device=device)
    index = torch.cartesian_prod(*[classes] * num_variables)  # (K^N, N), or (K,) if N = 1
    index = index.view(-1, num_variables)  # (K^N, N)
    return F.one_hot(index, num_classes).float()


@dataclass
class Exact(Estimator):
    name = "exact"
    uses_temperature = False

    def check_latent(self, num_variables: int, num_classes: int) -> None:
        codes = num_classes**num_variables
        if codes > MAX_CODES:
            raise InvalidValue(
                "estimator",
                self.name,
                f"it enumerates all K^N codes and this latent has {num_classes}^{num_variables}"
                f" = {codes:.3g} > {MAX_CODES}; use it with a smaller latent or choose another"
                " estimator",
            )

    def surrogate(
        self,
        logits: Tensor,
        cost: Cost,
        temperature: float | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        *batch, N, K = logits.shape
        self.check_latent(N, K)
        codes = all_codes(N, K, logits.device)  # (C, N, K)
        log_p = torch.log_softmax(logits.to(codes.dtype), dim=-1)  # (*batch, N, K)
        log_q = torch.einsum("cnk,...nk->c...", codes, log_p)  # (C, *batch): log q(c|x)
        f = cost(codes.view(-1, *[1] * len(batch), N, K).expand(-1, *batch, N, K))  # (C, *batch)
        return (log_q.exp() * f).sum(0)
