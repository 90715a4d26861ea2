"""The interface every gradient estimator for a categorical latent implements.

An estimator turns the encoder's logits theta and a per-image cost f(z) (for the VAE, the
reconstruction term -log p(x|z)) into a surrogate s(theta) per image such that

    value of s       = an estimate of E_{z ~ q_theta}[f(z)]
    gradient of s    = the estimator's gradient of E_q[f(z)] with respect to theta (and the
                       exact gradient with respect to f's own parameters, e.g. the decoder's)

so the training loss is just s + KL(q || p), whatever the estimator. The KL is analytic and
shared by every estimator, so estimators differ only in how they differentiate E_q[f(z)].

Shapes: logits (*batch, N, K), N variables of K classes. The cost takes z of shape
(*sample, *batch, N, K) (sample dims first: an estimator may evaluate several z per image)
and returns (*sample, *batch). The surrogate has shape (*batch,).

To add an estimator: one file in this folder with a subclass, one line in __init__.py, and one
config in configs/model/estimator/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

Cost = Callable[[Tensor], Tensor]


class Estimator:
    """Base class; subclasses are dataclasses whose fields are their settings."""

    name: ClassVar[str]
    # Whether the estimator reads the temperature tau (and so the model anneals one).
    uses_temperature: ClassVar[bool] = True
    # Whether its gradient is that of the Gumbel-Softmax relaxation at tau: the model then
    # also reports the relaxed ELBO, which is what such an estimator optimizes.
    relaxes: ClassVar[bool] = False

    def check_latent(self, num_variables: int, num_classes: int) -> None:
        """Raise vae.validation.InvalidValue if the estimator cannot serve this latent."""

    def surrogate(
        self,
        logits: Tensor,
        cost: Cost,
        temperature: float | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(*batch,) surrogate whose value estimates E_q[cost] and whose gradient is the estimator's."""
        raise NotImplementedError


class PathwiseEstimator(Estimator):
    """An estimator that draws one z per image and backpropagates through it."""

    def sample(
        self, logits: Tensor, temperature: float | None, generator: torch.Generator | None = None
    ) -> Tensor:
        """z (*batch, N, K) with the estimator's forward value and backward path to the logits."""
        raise NotImplementedError

    def surrogate(
        self,
        logits: Tensor,
        cost: Cost,
        temperature: float | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return cost(self.sample(logits, temperature, generator))


def straight_through(forward: Tensor, backward: Tensor) -> Tensor:
    """Exactly `forward` in the forward pass, the gradient of `backward` in the backward pass.

    Written forward + (backward - backward.detach()): the bracket is exactly 0, so the forward
    value keeps its exact one-hot entries (forward + backward - backward.detach() would not).
    """
    return forward + (backward - backward.detach())
