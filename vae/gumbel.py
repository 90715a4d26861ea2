"""Gumbel-Max and Gumbel-Softmax sampling.

Gumbel-Max: with g_i = -log(-log u_i), u_i ~ U(0, 1), the index argmax_i(logits_i + g_i) is
distributed exactly as Categorical(softmax(logits)) (Gumbel 1954; the proof is in the seed
document under ../shared/seed/).

Gumbel-Softmax / Concrete (Jang et al. 2017; Maddison et al. 2017): replace the argmax by
softmax((logits + g) / tau). It is differentiable in the logits, tends to the one-hot
Gumbel-Max sample as tau -> 0 and to the uniform vector as tau -> inf.

Straight-through ("hard"): the one-hot sample forward, the relaxed sample's gradient
backward, written y_hard + (y_soft - y_soft.detach()) so the forward value is exactly one-hot.

Why not ``torch.nn.functional.gumbel_softmax``: it draws the noise with ``exponential_()``,
which has returned exactly 0 (pytorch issues 22442, 22557, 101620) and overflows in half
precision (34372, 41663), and it gives NaN at tau = 0 (184031). Here the noise is drawn in
float32 or wider whatever the logits' dtype, the uniform draw is clamped away from 0, the
softmax runs in float32 on max-shifted scores (so no tau > 0 overflows), and tau <= 0 is
rejected.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_temperature(temperature: float | Tensor) -> float | Tensor:
    """Return ``temperature`` as a float if it is finite and > 0, else raise ValueError.

    A 0-d tensor passes through unchecked: that is how a compiled training step receives tau
    (a Python float would be a constant of the compiled graph, recompiled at every new tau);
    VAE.training_step checks the value before wrapping it.
    """
    if isinstance(temperature, Tensor):
        return temperature
    tau = float(temperature)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return tau


def _sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half, bfloat16 and float32 logits; float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def exponential_noise(
    shape: torch.Size | tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Exp(1) draws E = -log u, always finite and > 0.

    torch.rand draws u in [0, 1) with 24 random bits, so u = 0 happens about once in 16.7
    million float32 draws; u is clamped at the smallest normal number, which bounds E to
    [~6e-8, 87.3] in float32. Not ``Tensor.exponential_``: it has returned exactly 0.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"noise is drawn in float32 or float64, got {dtype}")
    u = torch.rand(shape, dtype=dtype, device=device, generator=generator)
    return -torch.log(u.clamp_min(torch.finfo(dtype).tiny))


def gumbel_noise(
    shape: torch.Size | tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Standard Gumbel noise g = -log E, E ~ Exp(1) (exponential_noise), always finite.

    With E in [~6e-8, 87.3] (float32), g lies in [-4.5, 16.6].
    """
    exponential = exponential_noise(shape, dtype=dtype, device=device, generator=generator)
    return -torch.log(exponential)


def _perturbed_scores(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """logits + Gumbel noise in float32 (or float64), shifted so the max along the last dim is 0.

    Softmax is invariant to the shift, and with every score <= 0, score / tau cannot overflow
    for any tau > 0 (it can only reach -inf, whose exp is an exact 0).
    """
    dtype = _sampling_dtype(logits.dtype)
    scores = logits.to(dtype) + gumbel_noise(
        logits.shape, dtype=dtype, device=logits.device, generator=generator
    )
    return scores - scores.max(dim=-1, keepdim=True).values.detach()


def _one_hot_argmax(scores: Tensor) -> Tensor:
    """One-hot vector (same shape and dtype as scores) at the argmax of the last dimension."""
    index = scores.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


def gumbel_max(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Exact one-hot sample of Categorical(softmax(logits)) along the last dimension.

    Args:
        logits: (..., K) unnormalized log-probabilities.
    Returns:
        (..., K) one-hot float tensor (float32, or float64 for float64 logits); no gradient.
    """
    with torch.no_grad():
        return _one_hot_argmax(_perturbed_scores(logits, generator))


def gumbel_softmax(
    logits: Tensor,
    temperature: float,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Relaxed (or straight-through) one-hot sample of Categorical(softmax(logits)).

    Args:
        logits: (..., K) unnormalized log-probabilities, any float dtype; finite.
        temperature: tau > 0. Small tau: close to one-hot, high gradient variance.
        hard: if True, return the exact one-hot Gumbel-Max sample in the forward pass and the
            relaxed sample's gradient in the backward pass (straight-through Gumbel-Softmax).
    Returns:
        (..., K) sample on the simplex, float32 (float64 for float64 logits): autocast casts
        it down where a layer wants lower precision.
    """
    tau = check_temperature(temperature)
    scores = _perturbed_scores(logits, generator)
    y_soft = torch.softmax(scores / tau, dim=-1)
    if not hard:
        return y_soft
    # The argmax of the scores, not of y_soft: at tiny tau, y_soft can underflow to ties.
    y_hard = _one_hot_argmax(scores.detach())
    return y_hard + (y_soft - y_soft.detach())  # exactly y_hard forward, d y_soft backward
