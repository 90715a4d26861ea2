"""The interface every gradient estimator for a discrete latent implements.

An estimator turns q(z|x) (a distribution whose parameters carry the encoder's gradient) and a
per-image cost f(z) (for the VAE, the reconstruction term -log p(x|z)) into a surrogate s per
image such that

    value of s       = an estimate of E_{z ~ q}[f(z)]
    gradient of s    = the estimator's gradient of E_q[f(z)] with respect to q's parameters
                       (and the exact gradient with respect to f's own parameters, the decoder's)

so the training loss is s + KL(q || p), with the KL analytic (Estimator.elbo_terms). The
score-function family is the exception its papers make: its learning signal is the whole
l(x, z) = f(z) + log q(z|x) - log p(z), so that variance normalization scales the encoder's
whole gradient, the KL's part included (vae/estimators/discrete/score_function.py).

Shapes: q has batch_shape (*batch,) and the latent's event_shape (categorical: (N, K) one-hot).
The cost takes z of shape (*sample, *batch, *event) (sample dims first: an estimator may evaluate
several z per image) and returns (*sample, *batch). The surrogate has shape (*batch,).

Estimators are grouped by the latent family they serve: vae/estimators/categorical/ (one-hot
codes: the Gumbel-Softmax family, straight-through, ReinMax), vae/estimators/binary/ (Bernoulli
codes: the binary Concrete, straight-through, ARM, DisARM) and vae/estimators/discrete/ (any
latent whose q can sample, score and enumerate codes: the score-function family, exact). A
latent lists the families it accepts (Latent.estimators); the same name may mean each family's
own form (gumbel_softmax: softmax for a categorical, the binary Concrete for a Bernoulli). To
add an estimator: one file in its family's folder, one line in that folder's __init__.py, and
one config in configs/model/estimator/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from vae.validation import InvalidValue

if TYPE_CHECKING:
    from vae.latents.base import Latent

Cost = Callable[[Tensor], Tensor]


class Estimator(nn.Module):
    """Base class. An nn.Module, so that an estimator with state (running averages of the learning
    signal, a baseline network) saves it in checkpoints and trains its parameters with the model;
    subclasses take their settings as constructor arguments and list them in settings()."""

    name: ClassVar[str]  # what model.estimator= calls it; the one place the name is written
    # Whether the estimator reads the temperature tau (and so the training system anneals one).
    uses_temperature: ClassVar[bool] = True
    # Whether its gradient is that of a relaxation at tau (the Gumbel-Softmax family): evaluation
    # then also reports the relaxed ELBO, which is what such an estimator optimizes.
    relaxes: ClassVar[bool] = False
    # Evaluations of the cost (decoder passes) per image and step; a cost gradient counts one more.
    decoder_passes: int = 1

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that built this estimator (what its config sets)."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.settings().items())

    def check_latent(self, latent: Latent) -> None:
        """Raise vae.validation.InvalidValue if the estimator cannot serve this latent."""

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        """Called once the shape of one input image is known (when the VAE is built): estimators
        whose baselines read the inputs (NVIL) build them here."""

    def elbo_terms(
        self,
        q: Distribution,
        cost: Cost,
        prior: Distribution,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """{"neg_elbo", "recon", "kl"}, each (*batch,): surrogates whose gradients are this
        estimator's training gradient of -ELBO = E_q[cost(z)] + KL(q || prior) and of E_q[cost],
        and the analytic KL.

        Here the surrogate of E_q[cost] plus the analytic KL: the KL's gradient is exact. The
        score-function family overrides this to put the KL inside its learning signal
        (score_function.py).
        """
        recon = self.surrogate(q, cost, temperature, generator, inputs)
        kl = kl_divergence(q, prior)
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        """(*batch,) surrogate whose value estimates E_q[cost] and whose gradient is the estimator's.

        inputs: the images (*batch, C, H, W) the cost is evaluated for, for estimators whose
        baselines read them.
        """
        raise NotImplementedError


class PathwiseEstimator(Estimator):
    """An estimator that draws one z per image and backpropagates through it."""

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        """z (*batch, *event) with the estimator's forward value and backward path to q's logits."""
        raise NotImplementedError

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        return cost(self.sample(q, temperature, generator))


def straight_through(forward: Tensor, backward: Tensor) -> Tensor:
    """Exactly `forward` in the forward pass, the gradient of `backward` in the backward pass.

    Written forward + (backward - backward.detach()): the bracket is exactly 0, so the forward
    value keeps its exact one-hot entries (forward + backward - backward.detach() would not).
    """
    return forward + (backward - backward.detach())


def registry(*classes: type[Estimator]) -> dict[str, type[Estimator]]:
    """{name: class} for a family's estimators."""
    return {cls.name: cls for cls in classes}


def build_estimator(
    spec: str | dict[str, Any] | Estimator, available: dict[str, type[Estimator]]
) -> Estimator:
    """An Estimator from a name (its default settings), a config node {name: ..., **settings},
    or an Estimator, among those `available` to the latent."""
    if isinstance(spec, Estimator):
        name, settings = spec.name, None
    elif isinstance(spec, dict):
        settings = dict(spec)
        name = settings.pop("name", None)
    else:
        name, settings = spec, {}
    if name not in available:
        raise InvalidValue("estimator", name, f"must be one of {', '.join(available)}")
    if settings is None:
        if type(spec) is not available[name]:
            raise InvalidValue("estimator", spec, f"a {name} estimator for another kind of latent")
        return spec
    try:
        return available[name](**settings)
    except TypeError as e:  # an unknown setting
        raise InvalidValue("estimator", spec, f"{name} takes no such setting ({e})") from None
    except InvalidValue as e:  # a setting's value, named under the estimator
        raise InvalidValue(f"estimator.{e.name}", e.value, e.allowed) from None
