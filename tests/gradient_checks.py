"""The statistical checks of the estimator tests: a mean gradient over independent draws against
a reference (the exact gradient), coordinate by coordinate, in standard errors."""

from __future__ import annotations

import math

import torch


def max_z(grads: torch.Tensor, reference: torch.Tensor) -> float:
    """max over coordinates of |mean - reference| / standard error, for grads (draws, *shape).
    Every gradient must be finite: a NaN is never read as a deviation."""
    assert torch.isfinite(grads).all(), "non-finite gradients"
    mean, stderr = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    return ((mean - reference) / stderr.clamp_min(1e-12)).abs().max().item()


def assert_mean_matches(grads: torch.Tensor, reference: torch.Tensor, z: float = 5.0) -> None:
    deviation = max_z(grads, reference)
    assert deviation < z, f"mean {grads.mean(0)}, reference {reference}, max |z| {deviation:.1f}"


def assert_mean_differs(grads: torch.Tensor, reference: torch.Tensor, z: float = 5.0) -> None:
    """The power check: the same test sees a biased estimator's bias."""
    deviation = max_z(grads, reference)
    assert deviation > z, f"a biased estimator passed: max |z| {deviation:.1f} < {z}"
