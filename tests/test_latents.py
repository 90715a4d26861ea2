"""The latents: every one against the interface (vae/latents/base.py), each against closed forms
and torch.distributions."""

import itertools
import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from vae.errors import InvalidValue
from vae.latents import MAX_ENUMERATED_CODES, BernoulliLatent, CategoricalLatent, GaussianLatent, Latent

LATENTS = {
    "gaussian": lambda: GaussianLatent(dim=5),
    "categorical": lambda: CategoricalLatent(num_variables=3, num_classes=4),
    "bernoulli": lambda: BernoulliLatent(num_latents=5, prior="learned"),
}


def _posterior(latent: Latent, *batch: int, scale: float = 2.0):
    params = torch.randn(*batch, latent.num_params, generator=torch.Generator().manual_seed(0)) * scale
    return latent.posterior(params)


# The interface, for every latent ------------------------------------------------------------


@pytest.mark.parametrize("name", LATENTS)
def test_posterior_prior_and_kl_have_the_documented_shapes(name):
    latent = LATENTS[name]()
    q = _posterior(latent, 6, 2)  # any batch shape
    assert q.batch_shape == (6, 2) and tuple(q.event_shape) == latent.event_shape
    p = latent.prior()
    assert p.batch_shape == () and tuple(p.event_shape) == latent.event_shape
    kl = latent.kl(q)
    assert kl.shape == (6, 2) and (kl >= -1e-6).all()
    torch.testing.assert_close(kl, kl_divergence(q, p))
    assert math.prod(latent.event_shape) == latent.code_size


@pytest.mark.parametrize("name", LATENTS)
def test_samples_from_a_generator_repeat_and_follow_q(name):
    latent = LATENTS[name]()
    q = _posterior(latent, 4)
    draw = lambda seed: q.sample((3,), generator=torch.Generator().manual_seed(seed))  # noqa: E731
    z = draw(1)
    assert z.shape == (3, 4, *latent.event_shape) and not z.requires_grad
    assert torch.equal(z, draw(1)) and not torch.equal(z, draw(2))
    # The mean of many draws is q's mean (the class probabilities of a one-hot latent).
    many = q.sample((40_000,), generator=torch.Generator().manual_seed(3))
    standard_error = many.std(0) / math.sqrt(len(many))
    assert ((many.mean(0) - q.mean).abs() <= 5 * standard_error + 1e-6).all()


@pytest.mark.parametrize("name", LATENTS)
def test_the_training_estimate_has_the_value_of_a_cost_and_a_gradient(name):
    latent = LATENTS[name]()
    params = torch.randn(8, latent.num_params, requires_grad=True)
    q = latent.posterior(params)
    weights = torch.randn(latent.code_size)
    surrogate = latent.surrogate(q, lambda z: z.flatten(-len(latent.event_shape)) @ weights, 1.0)
    assert surrogate.shape == (8,) and torch.isfinite(surrogate).all()
    surrogate.sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LATENTS)
def test_pictures_and_health_are_defined_for_every_latent(name):
    latent = LATENTS[name]()
    posteriors = [_posterior(latent, 50)]
    information = latent.coordinate_information(posteriors)
    assert information.dim() == 1 and (information >= -1e-6).all()
    health = latent.health(posteriors)
    assert health and all(key.startswith("latent/") for key in health)
    one = latent.posterior(torch.randn(1, latent.num_params))
    codes = latent.traversal(one, coordinate=1, steps=7)
    assert codes.shape[1:] == latent.event_shape and len(codes) >= 2
    for rows in latent.reconstruction_codes(posteriors[0], 0.5):
        assert rows.shape == (50, *latent.event_shape)


@pytest.mark.parametrize("name", LATENTS)
def test_health_counts_the_coordinates_in_use_alike_for_every_latent(name):
    latent = LATENTS[name]()
    varying = [_posterior(latent, 200, scale=3.0)]  # every coordinate's parameters vary with x
    health = latent.health(varying)
    assert health["latent/coordinates"] == len(latent.coordinate_information(varying))
    assert health["latent/in_use"] == health["latent/coordinates"]
    constant = [latent.posterior(torch.randn(1, latent.num_params).expand(200, -1))]  # q the same for all x
    assert latent.health(constant)["latent/in_use"] == 0


@pytest.mark.parametrize("name", LATENTS)
def test_enumeration_is_exact_where_allowed_and_refused_elsewhere(name):
    latent = LATENTS[name]()
    if latent.num_codes is None:  # continuous
        assert not latent.can_enumerate
        with pytest.raises(InvalidValue, match="continuous"):
            latent.all_codes()
        return
    codes = latent.all_codes()
    assert codes.shape == (latent.num_codes, *latent.event_shape)
    assert len({tuple(c.flatten().tolist()) for c in codes}) == latent.num_codes  # all distinct
    q = _posterior(latent, 5)
    total = q.log_prob(codes.unsqueeze(1)).exp().sum(0)  # (5,): sum_c q(c|x)
    torch.testing.assert_close(total, torch.ones(5))


def test_the_enumeration_limit_is_stated_once_and_applied():
    assert CategoricalLatent(7, 4).can_enumerate  # 4^7 = 16384 = 2^14 codes
    too_many = CategoricalLatent(20, 10)
    assert not too_many.can_enumerate and MAX_ENUMERATED_CODES == 2**14
    with pytest.raises(InvalidValue, match="1e\\+20 codes, more than the 16384"):
        too_many.all_codes()


# Closed forms -------------------------------------------------------------------------------


def test_gaussian_kl_matches_the_closed_form_and_torch_distributions():
    latent = GaussianLatent(dim=5)
    q = latent.posterior(torch.randn(8, 10) * 2)  # (B, 2 * dim)
    loc, scale = q.loc, q.scale
    closed_form = 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)
    reference = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum(-1)
    kl = latent.kl(q)
    assert kl.shape == (8,)
    torch.testing.assert_close(kl, closed_form)
    torch.testing.assert_close(kl, reference)


def test_categorical_kl_matches_the_closed_form_and_torch_distributions():
    latent = CategoricalLatent(num_variables=4, num_classes=6)
    q = latent.posterior(torch.randn(8, 24) * 3)
    probs = torch.softmax(q.logits, -1)  # (B, N, K)
    closed_form = (probs * (torch.log(probs) + math.log(6))).sum((-1, -2))
    reference = kl_divergence(Categorical(probs=probs), Categorical(logits=torch.zeros(6))).sum(-1)
    kl = latent.kl(q)
    assert kl.shape == (8,)
    torch.testing.assert_close(kl, closed_form)
    torch.testing.assert_close(kl, reference)


def test_categorical_log_prob_is_the_sum_over_variables():
    latent = CategoricalLatent(num_variables=2, num_classes=3)
    q = latent.posterior(torch.randn(1, 6))
    probs = q.probs[0]  # (2, 3)
    for i, j in itertools.product(range(3), range(3)):
        z = torch.zeros(2, 3)
        z[0, i] = z[1, j] = 1
        torch.testing.assert_close(q.log_prob(z).exp(), (probs[0, i] * probs[1, j]).view(1))


def test_reparameterized_gradient_matches_the_closed_form():
    # E[exp(z)] for z ~ N(mu, sigma^2) is exp(mu + sigma^2 / 2); its gradient is known exactly.
    latent = GaussianLatent(dim=1)
    loc = torch.tensor([0.3], requires_grad=True)
    raw_scale = torch.tensor([-0.5], requires_grad=True)
    n = 400_000
    q = latent.posterior(torch.cat([loc, raw_scale]).expand(n, 2))
    f = latent.surrogate(q, lambda z: torch.exp(z).squeeze(-1))  # (n,)
    (grad_loc,) = torch.autograd.grad(f.mean(), loc)

    sigma = q.scale[0, 0].item()
    exact = math.exp(0.3 + sigma**2 / 2)  # d/dmu of exp(mu + sigma^2 / 2)
    standard_error = f.detach().std().item() / math.sqrt(n)  # d f / d mu = f per sample
    assert abs(grad_loc.item() - exact) < 5 * standard_error


def test_categorical_samples_are_one_hot_and_the_relaxed_sample_is_not():
    latent = CategoricalLatent(num_variables=3, num_classes=4)
    q = latent.posterior(torch.randn(5, 12))
    z = q.sample()
    assert z.shape == (5, 3, 4) and (z.sum(-1) == 1).all() and set(z.unique().tolist()) == {0.0, 1.0}
    relaxed = latent.relaxed_sample(q, 0.5)
    assert relaxed.shape == (5, 3, 4) and not torch.equal(relaxed, relaxed.round())
    assert latent.prior().sample((7,)).shape == (7, 3, 4)


def test_a_categorical_posterior_says_why_it_has_no_rsample():
    q = CategoricalLatent(3, 4).posterior(torch.randn(2, 12))
    with pytest.raises(NotImplementedError, match="no reparameterization gradient.*relaxed_sample"):
        q.rsample()


def test_the_gaussian_has_a_manifold_only_in_two_dimensions():
    assert GaussianLatent(dim=3).manifold(5) is None
    grid = GaussianLatent(dim=2).manifold(5)
    assert grid.shape == (25, 2)
    torch.testing.assert_close(
        grid[2], torch.tensor([Normal(0, 1).icdf(torch.tensor(0.5)).item(), 1.6449]), atol=1e-3, rtol=0
    )
