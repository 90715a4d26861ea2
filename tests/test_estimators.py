"""Every gradient estimator: its forward values, and its gradient against a reference.

- Forward: one-hot where the estimator says so, and distributed as Categorical(softmax logits)
  by a seeded chi-square test (rejects at p < 1e-4, as in test_gumbel.py).
- Unbiased estimators (reinforce_loo, exact): the mean gradient over many draws matches the
  exact gradient, computed independently by summing over every code with itertools, within
  5 standard errors per coordinate (a correct estimator fails with probability ~6e-7 each).
- Biased estimators: the mean gradient matches an independent reference for a linear cost
  f(z) = c . z, where the references have closed forms or one-dimensional integrals.

Per-draw gradients come from one batched call: R copies of the same logits as R rows of one
leaf tensor, so row r of its gradient is draw r's gradient.
"""

import itertools
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from scipy import integrate
from scipy.stats import chisquare

from conftest import CONFIGS
from tests.gradient_checks import assert_mean_differs, assert_mean_matches
from vae.errors import InvalidValue
from vae.estimators import Estimator, build_estimator
from vae.estimators.categorical import GumbelRao
from vae.estimators.categorical.gumbel_rao import conditional_gumbel
from vae.gumbel import gumbel_max
from vae.latents import BernoulliLatent, CategoricalLatent, OneHotCategoricals

ESTIMATORS = CategoricalLatent.estimators


def as_estimator(name: str) -> Estimator:
    """The estimator, bound to a latent of LOGITS' shape (RELAX's control-variate network)."""
    estimator = build_estimator(name, ESTIMATORS)
    estimator.bind_latent(CategoricalLatent(num_variables=2, num_classes=3))
    return estimator


def surrogate(estimator: Estimator, logits: torch.Tensor, cost, tau, generator=None) -> torch.Tensor:
    """The estimator's surrogate for q(z|x) with these logits (*batch, N, K), and blank 1x2x2 images
    as its inputs (for NVIL's baseline)."""
    estimator.bind_inputs((1, 2, 2))
    inputs = torch.zeros(*logits.shape[:-2], 1, 2, 2)
    return estimator.surrogate(OneHotCategoricals(logits), cost, tau, generator, inputs=inputs)


ALPHA = 1e-4
LOGITS = torch.tensor([[1.5, 0.0, -1.0], [0.3, -0.5, 0.8]])  # (N=2, K=3)
ONE_HOT = ("st_gumbel", "straight_through", "gumbel_rao", "reinmax", "reinforce_loo", "exact")
TAU = 0.7


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows(logits: torch.Tensor, draws: int) -> torch.Tensor:
    """(draws, *logits.shape) leaf: each row one draw's logits."""
    return logits.expand(draws, *logits.shape).clone().requires_grad_()


def _codes_seen(name: str, logits: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The z an estimator passes to the cost, and the surrogate it returns."""
    seen = []

    def cost(z):
        seen.append(z.detach())
        return 2.0 * z[..., 0, 0]

    value = surrogate(as_estimator(name), logits, cost, TAU, generator=_generator(seed))
    return torch.cat([z.reshape(-1, *logits.shape[-2:]) for z in seen]), value


def _chi2_pvalue(index: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(index, minlength=len(probs)).double()
    probs = probs.double() / probs.double().sum()
    return chisquare(counts.numpy(), (probs * counts.sum()).numpy()).pvalue


# Forward values ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ONE_HOT)
def test_codes_are_exactly_one_hot(name):
    z, _ = _codes_seen(name, LOGITS.expand(1000, 2, 3))
    assert set(z.unique().tolist()) == {0.0, 1.0}
    assert (z.sum(-1) == 1).all()


# DARN and MuProp also evaluate the cost at a fixed or mean point, exact at every code; REBAR and
# RELAX at two relaxed samples whose argmax is their code's (their unbiasedness tests their codes).
@pytest.mark.parametrize(
    "name", [n for n in ESTIMATORS if n not in ("exact", "darn", "muprop", "rebar", "relax")]
)
def test_samples_follow_the_categorical(name):
    # The argmax of each variable's z (the relaxed one's too) is Categorical(softmax logits).
    z, _ = _codes_seen(name, LOGITS.expand(50_000, 2, 3), seed=1)
    for n in range(2):
        assert _chi2_pvalue(z[:, n].argmax(-1), torch.softmax(LOGITS[n], -1)) > ALPHA


def test_gumbel_softmax_sample_is_relaxed_on_the_simplex():
    z, _ = _codes_seen("gumbel_softmax", LOGITS.expand(1000, 2, 3))
    torch.testing.assert_close(z.sum(-1), torch.ones(1000, 2))
    assert ((z > 0) & (z < 1)).all()


def test_exact_value_is_the_expectation_over_every_code():
    w = torch.randn(6, generator=_generator(2))
    cost = lambda z: torch.sin(z.flatten(-2) @ w) * 3  # noqa: E731
    value = surrogate(as_estimator("exact"), LOGITS, cost, None)
    assert value.shape == ()
    torch.testing.assert_close(value, _expectation_by_enumeration(LOGITS, cost))


def test_reinforce_value_is_the_mean_cost_of_its_samples():
    seen = []

    def cost(z):
        seen.append(z)
        return z[..., 0, 0] + 2 * z[..., 1, 2]

    value = surrogate(as_estimator("reinforce_loo"), LOGITS.expand(5, 2, 3), cost, None, _generator(3))
    (z,) = seen
    assert z.shape == (4, 5, 2, 3)  # (num_samples, *batch, N, K)
    torch.testing.assert_close(value, cost(z).mean(0))


# Unbiased estimators against the exact gradient --------------------------------------------

W = torch.randn(6, generator=_generator(4))
U = torch.randn(6, generator=_generator(5))


def _nonlinear_cost(z: torch.Tensor) -> torch.Tensor:
    """(*sample, *batch, 2, 3) -> (*sample, *batch): a cost no linearization gets right."""
    flat = z.flatten(-2)
    return (flat @ W) ** 2 + 3 * torch.sin(2 * (flat @ U))


def _expectation_by_enumeration(logits: torch.Tensor, cost) -> torch.Tensor:
    """sum_c prod_n softmax(logits_n)[c_n] f(c), written independently of vae.estimators.exact."""
    probs = torch.softmax(logits, -1)
    total = 0.0
    for classes in itertools.product(range(logits.shape[-1]), repeat=logits.shape[-2]):
        code = torch.zeros(logits.shape[-2:])
        for n, k in enumerate(classes):
            code[n, k] = 1.0
        weight = math.prod(probs[..., n, k] for n, k in enumerate(classes))
        total = total + weight * cost(code)
    return total


def _exact_gradient(cost) -> torch.Tensor:
    logits = LOGITS.clone().requires_grad_()
    (grad,) = torch.autograd.grad(_expectation_by_enumeration(logits, cost), logits)
    return grad


def _draws(name: str, cost, draws: int, seed: int, tau: float = TAU, estimator=None) -> torch.Tensor:
    """Per-draw gradients (draws, N, K) of the estimator's surrogate."""
    rows = _rows(LOGITS, draws)
    estimator = estimator or as_estimator(name)
    surrogate(estimator, rows, cost, tau, generator=_generator(seed)).sum().backward()
    return rows.grad


def test_exact_gradient_equals_the_enumerated_gradient():
    grad = _draws("exact", _nonlinear_cost, 1, seed=0)[0]
    torch.testing.assert_close(grad, _exact_gradient(_nonlinear_cost))


@pytest.mark.parametrize("name", ["reinforce_loo", "rebar", "relax"])
def test_unbiased_estimators_match_the_exact_gradient(name):
    grads = _draws(name, _nonlinear_cost, 40_000, seed=6)
    assert_mean_matches(grads, _exact_gradient(_nonlinear_cost))


@pytest.mark.parametrize("name", ["st_gumbel", "straight_through", "reinmax"])
def test_the_mean_check_sees_the_bias_of_biased_estimators(name):
    # Power: with the same number of draws, a biased estimator fails the unbiasedness check.
    grads = _draws(name, _nonlinear_cost, 40_000, seed=6)
    assert_mean_differs(grads, _exact_gradient(_nonlinear_cost))


# Biased estimators against independent references, linear cost f(z) = c . z ----------------

C = torch.tensor([[0.7, -1.2, 0.4], [2.0, 0.1, -0.9]])  # (N, K)


def _linear_cost(z: torch.Tensor) -> torch.Tensor:
    return (z * C).sum((-2, -1))


def _softmax_jacobian_times(probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J(q) g = (diag(q) - q q^T) g per variable, (N, K)."""
    return probs * g - probs * (probs * g).sum(-1, keepdim=True)


def test_straight_through_gradient_is_the_tempered_softmax_jacobian():
    grads = _draws("straight_through", _linear_cost, 100, seed=7)
    reference = _softmax_jacobian_times(torch.softmax(LOGITS / TAU, -1), C) / TAU
    torch.testing.assert_close(grads, reference.expand_as(grads))  # no noise in the backward path


def _gumbel_softmax_linear_reference(tau: float) -> torch.Tensor:
    """E_G[d/d theta c . softmax((theta + G) / tau)] for K = 2, by quadrature.

    With K = 2, y_1 = sigmoid((theta_1 - theta_2 + L) / tau), L = G_1 - G_2 ~ Logistic(0, 1).
    """
    theta, c = torch.tensor([0.8, -0.4]), torch.tensor([1.5, -0.5])
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    delta = float(theta[0] - theta[1])

    def integrand(logistic):  # d y_1 / d theta_1 at L = logistic, times the Logistic density
        s = sig((delta + logistic) / tau)
        return s * (1 - s) / tau * sig(logistic) * (1 - sig(logistic))

    dy1 = integrate.quad(integrand, -60, 60, points=[-delta], limit=200)[0]
    g1 = float(c[0] - c[1]) * dy1
    return theta, c, torch.tensor([g1, -g1])


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel", "gumbel_rao"])
@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_gumbel_softmax_family_mean_gradient_matches_quadrature(name, tau):
    # On a linear cost all three share the expected gradient: Gumbel-Rao only averages the
    # ST-Gumbel gradient over the conditional Gumbels, which keeps its mean.
    theta, c, reference = _gumbel_softmax_linear_reference(tau)
    rows = theta.view(1, 1, 2).expand(40_000, 1, 2).clone().requires_grad_()
    cost = lambda z: (z * c).sum((-2, -1))  # noqa: E731
    surrogate(as_estimator(name), rows, cost, tau, generator=_generator(8)).sum().backward()
    assert_mean_matches(rows.grad[:, 0], reference)


def test_gumbel_rao_has_lower_variance_than_st_gumbel():
    st = _draws("st_gumbel", _nonlinear_cost, 20_000, seed=9)
    rao = _draws("gumbel_rao", _nonlinear_cost, 20_000, seed=9, estimator=GumbelRao(num_draws=10))
    # Seen here: about 2/3 of ST-Gumbel's total variance with 10 draws at tau = 0.7.
    assert rao.var(0).sum() < 0.8 * st.var(0).sum()


def test_conditional_gumbels_keep_the_argmax_and_the_gumbel_marginal():
    # If D ~ Cat(p) and G | D is drawn conditionally, then G is unconditionally Gumbel(0, 1):
    # mean Euler's gamma, variance pi^2 / 6, and argmax(log p + G) = D always.
    log_p = torch.log_softmax(LOGITS, -1).expand(100_000, 2, 3)
    d = gumbel_max(log_p, generator=_generator(10))
    g = conditional_gumbel(log_p, d, num_draws=2, generator=_generator(11))  # (2, 100k, 2, 3)
    assert torch.equal((log_p + g).argmax(-1), d.argmax(-1).expand(2, -1, -1))
    flat = g.flatten(0, 1)
    torch.testing.assert_close(flat.mean(0), torch.full((2, 3), 0.5772), atol=0.01, rtol=0)
    torch.testing.assert_close(flat.var(0), torch.full((2, 3), math.pi**2 / 6), atol=0.03, rtol=0)


def test_reinmax_mean_gradient_matches_its_closed_form():
    # E_D[2 J(pi_1(D)) c] - 1/2 J(pi_0) c, the expectation over the K classes of each variable.
    tau = 1.3
    pi_0, soft = torch.softmax(LOGITS, -1), torch.softmax(LOGITS / tau, -1)
    reference = -0.5 * _softmax_jacobian_times(pi_0, C)
    for k in range(3):
        pi_1 = (torch.nn.functional.one_hot(torch.tensor([k, k]), 3).float() + soft) / 2
        reference += 2 * pi_0[:, k : k + 1] * _softmax_jacobian_times(pi_1, C)
    assert_mean_matches(_draws("reinmax", _linear_cost, 40_000, seed=12, tau=tau), reference)


def test_reinmax_is_unbiased_for_a_linear_cost_at_tau_one():
    # At tau = 1, sum_i pi_i J((e_i + pi) / 2) = 3/4 J(pi), so ReinMax's expected gradient is
    # 2 * 3/4 J(pi) c - 1/2 J(pi) c = J(pi) c, the true gradient of E[c . D]; ST's is not.
    reference = _softmax_jacobian_times(torch.softmax(LOGITS, -1), C)
    assert_mean_matches(_draws("reinmax", _linear_cost, 40_000, seed=13, tau=1.0), reference)
    assert_mean_differs(_draws("straight_through", _linear_cost, 100, seed=13, tau=1.0), reference)


# Numerics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tau", [1e-4, 1.0, 100.0])
def test_values_and_gradients_stay_finite_at_extreme_logits_and_tau(name, dtype, tau):
    logits = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 1e-3]]).expand(2000, 2, 3).to(dtype)
    logits = logits.clone().requires_grad_()
    value = surrogate(as_estimator(name), logits, _nonlinear_cost, tau, _generator(14))
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(logits.grad).all()


# Interface and configs -----------------------------------------------------------------------


def test_unknown_estimator_names_the_choices():
    with pytest.raises(InvalidValue, match="'bogus'.*gumbel_softmax, st_gumbel"):
        as_estimator("bogus")


def test_exact_refuses_a_latent_too_large_to_enumerate():
    with pytest.raises(InvalidValue, match="20x10 categorical latent cannot be enumerated: it has 1e\\+20"):
        CategoricalLatent(20, 10, estimator="exact")
    CategoricalLatent(7, 4, estimator="exact")  # 4^7 = 16384 codes: allowed


def test_bad_settings_are_refused():
    with pytest.raises(InvalidValue, match="num_samples=1"):
        ESTIMATORS["reinforce_loo"](num_samples=1)
    with pytest.raises(InvalidValue, match="num_draws=0"):
        GumbelRao(num_draws=0)


@pytest.mark.parametrize("latent", [CategoricalLatent, BernoulliLatent])
def test_every_estimator_has_a_config_with_its_default_settings(latent):
    # model.estimator=NAME builds the class defaults, model/estimator=NAME the config file:
    # both must give the same estimator, for every latent that has it.
    files = {p.stem for p in (CONFIGS / "model" / "estimator").glob("*.yaml")}
    assert set(latent.estimators) <= files
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        for name, cls in latent.estimators.items():
            node = compose("train", overrides=[f"model/estimator={name}"]).model.estimator
            built = build_estimator(instantiate(node, _convert_="all"), latent.estimators)
            assert isinstance(built, Estimator) and type(built) is cls
            assert built.settings() == cls().settings() == build_estimator(name, latent.estimators).settings()


def test_every_estimator_config_serves_some_latent():
    import yaml

    configs = {
        p.stem: yaml.safe_load(p.read_text()) for p in (CONFIGS / "model" / "estimator").glob("*.yaml")
    }
    every = set(CategoricalLatent.estimators) | set(BernoulliLatent.estimators)
    assert {c["name"] for c in configs.values()} == every  # and each estimator has one named after it
    assert every <= set(configs)


def test_an_unknown_setting_is_named():
    with pytest.raises(InvalidValue, match="gumbel_rao takes no such setting.*num_drawz"):
        build_estimator({"name": "gumbel_rao", "num_drawz": 3}, ESTIMATORS)
