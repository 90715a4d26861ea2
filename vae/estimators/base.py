"""The interface every gradient estimator for a discrete latent implements.

An estimator turns q(z|x) (a distribution whose parameters carry the encoder's gradient) and a
per-image cost f(z) (for the VAE, the reconstruction term -log p(x|z)) into a surrogate s per
image such that

    value of s       = an estimate of E_{z ~ q}[f(z)]
    gradient of s    = the estimator's gradient of E_q[f(z)] with respect to q's parameters
                       (and the exact gradient with respect to f's own parameters, the decoder's)

so the training loss is s + KL(q || p), with the KL analytic (Estimator.elbo_terms). The
score-function family, REBAR and RELAX are the exception their papers make: their learning signal
is the whole l(x, z) = f(z) + log q(z|x) - log p(z), so that variance normalization or a learned
control variate acts on the encoder's whole gradient, the KL's part included
(LearningSignalEstimator).

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

from vae.errors import InvalidValue

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
        """Raise vae.errors.InvalidValue if the estimator cannot serve this latent."""

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups of the estimator's learned parameters that can have an optimizer of their
        own (group_optimizers): "control_variate" for a learned baseline or control variate.
        Parameters in no group train with the model's optimizer."""
        return {}

    def bind_latent(self, latent: Latent) -> None:
        """Called when the estimator is attached to a latent (after check_latent): estimators
        whose control variate reads z (RELAX's network) build it for the latent's size here."""

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

    def forward(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        """The estimator as a library: estimator(q, cost, tau) is surrogate(as_posterior(q), ...),
        so q may be torch's own Bernoulli, Independent(Bernoulli, 1), OneHotCategorical or
        Independent(OneHotCategorical, 1) as well as this project's posteriors."""
        return self.surrogate(as_posterior(q), cost, temperature, generator, inputs)

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


def as_posterior(q: Distribution) -> Distribution:
    """q as the posterior class an estimator reads (sample(generator=...), .logits, exact
    log_prob and enumeration): IndependentBernoullis with event (N,) or OneHotCategoricals with
    event (N, K). torch's Bernoulli with batch shape (*batch, N) counts its last batch dimension as
    the N bits (as Independent(Bernoulli, 1) does); OneHotCategorical's last batch dimension
    likewise counts as the N variables. The logits keep their gradient."""
    from torch.distributions import Bernoulli, Independent, OneHotCategorical

    from vae.latents import IndependentBernoullis, OneHotCategoricals

    if isinstance(q, (IndependentBernoullis, OneHotCategoricals)):
        return q
    base, dims = (q.base_dist, q.reinterpreted_batch_ndims) if isinstance(q, Independent) else (q, 0)
    if isinstance(base, Bernoulli) and dims <= 1 and base.batch_shape:
        return IndependentBernoullis(base.logits)
    if isinstance(base, OneHotCategorical) and dims <= 1 and base.batch_shape:
        return OneHotCategoricals(base.logits)
    raise InvalidValue(
        "q",
        q,
        "must be a Bernoulli or OneHotCategorical (torch's, or wrapped in Independent(..., 1)) with"
        " the latent's variables as its last batch dimension, or vae.latents.IndependentBernoullis"
        " / OneHotCategoricals",
    )


class LearningSignalEstimator(Estimator):
    """An estimator whose learning signal is the whole l(x, z) = cost(z) + log q(z|x) - log p(z),
    the KL inside it, as the papers of the score-function family (NVIL, MuProp) and of REBAR and
    RELAX define it: variance normalization and learned control variates then act on the
    encoder's whole gradient, the KL's part included."""

    def elbo_terms(
        self,
        q: Distribution,
        cost: Cost,
        prior: Distribution,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The surrogate of E_q[l(x, z)]: its value a one-sample -ELBO; recon is that less the
        analytic KL.

        log q(z|x) enters with q's parameters held fixed: its own gradient at fixed z has mean
        zero, and the papers leave it out. log p(z) keeps its gradient to a learned prior. Both
        are linear in z, so at a relaxed z (REBAR's control variate) they are the relaxed ELBO's.
        """
        fixed_q = type(q)(logits=q.logits.detach())

        def learning_signal(z: Tensor) -> Tensor:  # (*sample, *batch)
            return cost(z) + fixed_q.log_prob(z) - prior.log_prob(z)

        neg_elbo = self.surrogate(q, learning_signal, temperature, generator, inputs)
        kl = kl_divergence(q, prior)
        return {"neg_elbo": neg_elbo, "recon": neg_elbo - kl, "kl": kl}


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
