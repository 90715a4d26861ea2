"""The Bernoulli latent and its estimators, against closed forms, torch.distributions and the
enumerated exact gradient.

Unbiased estimators: the mean gradient over many draws matches the exact gradient (a sum over all
2^N codes, written with itertools, independently of vae.estimators) within 5 standard errors per
coordinate; a power check shows the same test rejects a biased estimator.
"""

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare
from torch.distributions import Bernoulli, kl_divergence

from tests.gradient_checks import assert_mean_differs, assert_mean_matches
from vae.estimators import Estimator, build_estimator
from vae.estimators.binary.concrete import binary_concrete
from vae.latents import BernoulliLatent, IndependentBernoullis

ESTIMATORS = BernoulliLatent.estimators
LOGITS = torch.tensor([1.2, -0.4, 0.3])  # N = 3 bits
W = torch.tensor([0.8, -1.3, 0.5])
U = torch.tensor([-0.7, 0.9, 1.1])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nonlinear_cost(z: torch.Tensor) -> torch.Tensor:
    """(*sample, *batch, 3) -> (*sample, *batch): a cost no linearization gets right."""
    return (z @ W) ** 2 + 3 * torch.sin(2 * (z @ U)) + z.prod(-1)


def _exact_gradient(cost) -> torch.Tensor:
    logits = LOGITS.clone().requires_grad_()
    probs = torch.sigmoid(logits)
    total = 0.0
    for bits in itertools.product((0.0, 1.0), repeat=3):
        z = torch.tensor(bits)
        weight = torch.prod(torch.where(z == 1, probs, 1 - probs))
        total = total + weight * cost(z)
    (grad,) = torch.autograd.grad(total, logits)
    return grad


def _built(spec) -> Estimator:
    """The estimator, bound to a 3-bit latent (RELAX's network) and to 1x2x2 images (NVIL's)."""
    estimator = build_estimator(spec, ESTIMATORS)
    estimator.bind_latent(BernoulliLatent(num_latents=3))
    estimator.bind_inputs((1, 2, 2))
    return estimator


def _draws(name: str, cost, draws: int, seed: int, tau: float = 0.7, **settings) -> torch.Tensor:
    """Per-draw gradients (draws, 3) of the estimator's surrogate: one leaf row per draw."""
    rows = LOGITS.expand(draws, 3).clone().requires_grad_()
    estimator = _built({"name": name, **settings})
    estimator.surrogate(IndependentBernoullis(rows), cost, tau, _generator(seed)).sum().backward()
    return rows.grad


# The latent ----------------------------------------------------------------------------------


def test_kl_from_logits_matches_torch_distributions_for_a_learned_prior():
    latent = BernoulliLatent(num_latents=4, prior="learned")
    with torch.no_grad():
        latent.prior_logits.copy_(torch.tensor([2.0, -1.0, 0.0, 3.0]))
    q = latent.posterior(torch.tensor([[0.5, -3.0, 4.0, -4.0], [0.0, 0.0, 1.0, 2.0]]))
    prior = Bernoulli(logits=latent.prior_logits.expand_as(q.logits))
    reference = kl_divergence(Bernoulli(logits=q.logits), prior).sum(-1)
    torch.testing.assert_close(latent.kl(q), reference)
    assert latent.prior_parameters() == [latent.prior_logits]
    assert BernoulliLatent(4).prior_parameters() == []  # the uniform prior is fixed
    # Where probabilities round to 0 or 1 (torch's own KL then gives inf), logits keep it finite.
    with torch.no_grad():
        latent.prior_logits.copy_(torch.tensor([30.0, -30.0, 0.0, 0.0]))
    extreme = latent.kl(latent.posterior(torch.tensor([[-40.0, 40.0, 40.0, -40.0]])))
    assert torch.isfinite(extreme).all() and extreme.item() == pytest.approx(
        30 + 30 + 2 * math.log(2), rel=1e-4
    )


def test_the_learned_prior_trains_with_the_model():
    latent = BernoulliLatent(num_latents=3, prior="learned")
    q = latent.posterior(torch.full((8, 3), 2.0))  # q puts ~0.88 on every bit
    latent.kl(q).sum().backward()
    assert (latent.prior_logits.grad < 0).all()  # raising p(z = 1) lowers the KL


def test_samples_are_binary_and_follow_q():
    q = IndependentBernoullis(LOGITS.expand(40_000, 3))
    z = q.sample(generator=_generator(0))
    assert set(z.unique().tolist()) == {0.0, 1.0}
    standard_error = (torch.sigmoid(LOGITS) * (1 - torch.sigmoid(LOGITS)) / 40_000).sqrt()
    assert ((z.mean(0) - torch.sigmoid(LOGITS)).abs() < 5 * standard_error).all()


@pytest.mark.parametrize("tau", [0.05, 0.01])
def test_binary_concrete_samples_approach_the_bernoulli_as_tau_falls(tau):
    y = binary_concrete(LOGITS.expand(50_000, 3), tau, generator=_generator(1))
    assert ((y > 0) & (y < 1)).any()  # relaxed, not yet hard
    for n in range(3):  # rounded, each bit is Bernoulli(sigmoid(phi_n)): chi-square, p > 1e-4
        ones = int((y[:, n] > 0.5).sum())
        p = torch.sigmoid(LOGITS[n]).item()
        assert chisquare([50_000 - ones, ones], [50_000 * (1 - p), 50_000 * p]).pvalue > 1e-4
    hard = binary_concrete(LOGITS.expand(1000, 3), tau, hard=True, generator=_generator(2))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}


def test_every_estimator_stays_finite_at_extreme_logits_and_tau():
    logits = torch.tensor([60.0, -60.0, 0.0]).expand(500, 3)
    for name in ESTIMATORS:
        if name == "exact":
            continue
        for dtype in (torch.float32, torch.bfloat16):
            for tau in (1e-4, 1.0, 100.0):
                rows = logits.to(dtype).clone().requires_grad_()
                estimator = _built(name)  # NVIL's baseline reads (blank) images
                q = IndependentBernoullis(rows)
                value = estimator.surrogate(
                    q, _nonlinear_cost, tau, _generator(3), inputs=torch.zeros(500, 1, 2, 2)
                )
                value.sum().backward()
                assert torch.isfinite(value).all() and torch.isfinite(rows.grad).all(), (name, dtype, tau)


# Unbiased estimators against the exact gradient --------------------------------------------


@pytest.mark.parametrize(
    "name, settings",
    [("arm", {}), ("disarm", {}), ("reinforce_loo", {"num_samples": 2}), ("rebar", {}), ("relax", {})],
)
def test_unbiased_estimators_match_the_exact_gradient(name, settings):
    grads = _draws(name, _nonlinear_cost, 60_000, seed=4, **settings)
    assert_mean_matches(grads, _exact_gradient(_nonlinear_cost))


def test_exact_is_the_exact_gradient():
    torch.testing.assert_close(
        _draws("exact", _nonlinear_cost, 1, seed=0)[0], _exact_gradient(_nonlinear_cost)
    )


@pytest.mark.parametrize("name", ["straight_through", "st_gumbel", "gumbel_softmax"])
def test_the_mean_check_sees_the_bias_of_biased_estimators(name):
    grads = _draws(name, _nonlinear_cost, 60_000, seed=4)
    assert_mean_differs(grads, _exact_gradient(_nonlinear_cost))


def test_disarm_is_never_noisier_than_arm():
    arm = _draws("arm", _nonlinear_cost, 40_000, seed=5)
    disarm = _draws("disarm", _nonlinear_cost, 40_000, seed=5)
    assert (disarm.var(0) <= arm.var(0)).all(), (disarm.var(0), arm.var(0))
    assert disarm.var(0).sum() < 0.8 * arm.var(0).sum()


def _variance(estimator, draws: int = 20_000) -> float:
    rows = LOGITS.expand(draws, 3).clone().requires_grad_()
    estimator.surrogate(IndependentBernoullis(rows), _nonlinear_cost, None, _generator(9)).sum().backward()
    assert torch.isfinite(rows.grad).all()
    return rows.grad.var(0).sum().item()


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_the_learned_control_variate_lowers_the_variance_it_is_trained_on(name):
    """300 Adam steps on the gradient the surrogate passes to the control variate's parameters
    (and to nothing else it learns) cut the estimate's variance; the estimate stays unbiased."""
    estimator = _built(name)
    before = _variance(estimator)
    parameters = estimator.parameter_groups()["control_variate"]
    assert {id(p) for p in parameters} == {id(p) for p in estimator.parameters()}
    optimizer = torch.optim.Adam(parameters, lr=3e-2)
    generator = _generator(1)
    for _ in range(300):
        optimizer.zero_grad()
        rows = LOGITS.expand(256, 3).clone().requires_grad_()
        estimator.surrogate(IndependentBernoullis(rows), _nonlinear_cost, None, generator).mean().backward()
        optimizer.step()
    assert _variance(estimator) < 0.75 * before
    rows = LOGITS.expand(60_000, 3).clone().requires_grad_()
    estimator.surrogate(IndependentBernoullis(rows), _nonlinear_cost, None, _generator(4)).sum().backward()
    assert_mean_matches(rows.grad, _exact_gradient(_nonlinear_cost))


def test_straight_through_gradient_is_the_slope_of_the_tempered_sigmoid():
    # For a linear cost c . z the ST gradient is deterministic: c_n sigmoid'(phi_n / tau) / tau.
    c = torch.tensor([1.5, -0.5, 2.0])
    tau = 0.6
    grads = _draws("straight_through", lambda z: z @ c, 50, seed=6, tau=tau)
    s = torch.sigmoid(LOGITS / tau)
    torch.testing.assert_close(grads, (c * s * (1 - s) / tau).expand_as(grads))


def test_traversals_flip_one_bit_and_health_counts_the_bits_in_use():
    latent = BernoulliLatent(num_latents=4)
    params = torch.tensor([[3.0, -3.0, 0.0, 0.0]]).expand(100, 4).clone()
    params[:, 2] = torch.linspace(-6, 6, 100)  # bit 2 depends on the image, the others do not
    posteriors = [latent.posterior(params)]
    health = latent.health(posteriors)
    assert health["latent/active_bits"] == 1 and health["latent/ignored_bits"] == 3
    assert latent.coordinate_information(posteriors).argmax().item() == 2
    codes = latent.traversal(latent.posterior(params[:1]), coordinate=2, steps=11)
    assert codes.tolist() == [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]
