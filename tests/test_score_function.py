"""The score-function family (SF, NVIL, DARN, MuProp) on both discrete latents: unbiased ones
against the enumerated exact gradient, DARN against its closed-form expectation, and the
variance normalization's behaviour."""

import math

import pytest
import torch

from tests.gradient_checks import assert_mean_differs, assert_mean_matches
from vae.estimators import build_estimator
from vae.estimators.discrete.score_function import RunningNormalizer
from vae.latents import BernoulliLatent, CategoricalLatent, IndependentBernoullis, OneHotCategoricals

# Two small latents: 3 bits, and 2 variables of 3 classes; a cost no linearization gets right.
CASES = {
    "bernoulli": (IndependentBernoullis, torch.tensor([1.2, -0.4, 0.3]), BernoulliLatent.estimators),
    "categorical": (
        OneHotCategoricals,
        torch.tensor([[1.5, 0.0, -1.0], [0.3, -0.5, 0.8]]),
        CategoricalLatent.estimators,
    ),
}
W = torch.tensor([0.8, -1.3, 0.5, 0.2, 1.1, -0.6])
U = torch.tensor([-0.7, 0.9, 1.1, 0.4, -0.3, 0.5])
INPUT_SHAPE = (1, 2, 2)


def _cost(z: torch.Tensor, event_dims: int) -> torch.Tensor:
    flat = z.flatten(z.dim() - event_dims)
    w, u = W[: flat.shape[-1]], U[: flat.shape[-1]]
    return (flat @ w) ** 2 + 3 * torch.sin(2 * (flat @ u))


def _exact_gradient(case: str) -> torch.Tensor:
    family, logits, estimators = CASES[case]
    leaf = logits.clone().requires_grad_()
    q = family(leaf)
    exact = build_estimator("exact", estimators)
    exact.surrogate(q, lambda z: _cost(z, len(q.event_shape)), None).backward()
    return leaf.grad


def _draws(
    case: str, name: str, draws: int, seed: int, cost=_cost, estimator=None, **settings
) -> torch.Tensor:
    """Per-draw gradients (draws, *logits.shape): one leaf row per draw, one batched call; of the
    estimator given, or of one built from name and settings."""
    family, logits, estimators = CASES[case]
    rows = logits.expand(draws, *logits.shape).clone().requires_grad_()
    if estimator is None:
        estimator = build_estimator({"name": name, **settings}, estimators)
        estimator.bind_inputs(INPUT_SHAPE)
    inputs = torch.rand(draws, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))
    q = family(rows)
    f = lambda z: cost(z, len(q.event_shape))  # noqa: E731
    estimator.surrogate(q, f, None, torch.Generator().manual_seed(seed), inputs=inputs).sum().backward()
    return rows.grad


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["reinforce", "nvil", "muprop"])
def test_unbiased_score_function_estimators_match_the_exact_gradient(case, name):
    grads = _draws(case, name, 80_000, seed=1, normalize=False)
    assert_mean_matches(grads, _exact_gradient(case))


def _quadratic_cost(z: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Quadratic in the code (interactions between units included)."""
    flat = z.flatten(z.dim() - event_dims)
    w, u = W[: flat.shape[-1]], U[: flat.shape[-1]]
    return (flat @ w) ** 2 + 3 * (flat @ u)


def test_darn_is_exact_for_a_cost_quadratic_in_each_bit():
    # Per bit, DARN's mean is grad mu_n times (f'_n(0) + f'_n(1)) / 2, which equals the finite
    # difference f(1) - f(0) the exact gradient needs when f is quadratic in that bit.
    family, logits, estimators = CASES["bernoulli"]
    leaf = logits.clone().requires_grad_()
    q = family(leaf)
    build_estimator("exact", estimators).surrogate(q, lambda z: _quadratic_cost(z, 1), None).backward()
    grads = _draws("bernoulli", "darn", 80_000, seed=2, cost=_quadratic_cost, normalize=False)
    assert_mean_matches(grads, leaf.grad)


def _bernoulli_darn_expectation(cost) -> torch.Tensor:
    """sigma'(phi_n) * E_{z_-n}[(f'_n(z_n = 0) + f'_n(z_n = 1)) / 2]: the mean slope at the bit's
    two values, over the other bits' codes, enumerated."""
    family, logits, _ = CASES["bernoulli"]
    q = family(logits)
    codes = q.enumerate_support(expand=False).squeeze(1)  # (8, 3)
    probs = q.log_prob(codes).exp()  # (8,)
    expectation = torch.zeros_like(logits)
    for n in range(len(logits)):
        slopes = []
        for value in (0.0, 1.0):
            at = codes.clone()
            at[:, n] = value
            at.requires_grad_()
            (slope,) = torch.autograd.grad(cost(at, 1).sum(), at)
            slopes.append(slope[:, n])
        mean_slope = (probs * (slopes[0] + slopes[1]) / 2).sum()
        expectation[n] = torch.sigmoid(logits[n]) * torch.sigmoid(-logits[n]) * mean_slope
    return expectation


def _categorical_darn_expectation(cost) -> torch.Tensor:
    """sum_z q(z) sum_n f'(z)_n . (z_n - 1/K) grad log q(z_n), every code enumerated."""
    family, logits, _ = CASES["categorical"]
    leaf = logits.clone().requires_grad_()
    q = family(leaf)
    codes = q.enumerate_support(expand=False).squeeze(1).clone().requires_grad_()  # (9, 2, 3)
    (slope,) = torch.autograd.grad(cost(codes, 2).sum(), codes)
    signal = (slope * (codes.detach() - 1 / 3)).sum(-1)  # (9, 2)
    log_q_units = (codes.detach() * torch.log_softmax(leaf, -1)).sum(-1)  # (9, 2)
    weights = q.log_prob(codes.detach()).exp().detach()  # (9,)
    ((weights[:, None] * signal * log_q_units).sum()).backward()
    return leaf.grad


@pytest.mark.parametrize("case", CASES)
def test_darn_is_biased_and_matches_its_expectation_computed_by_enumeration(case):
    grads = _draws(case, "darn", 80_000, seed=2, normalize=False)
    assert_mean_differs(grads, _exact_gradient(case))  # a cost no quadratic matches
    expectation = _bernoulli_darn_expectation if case == "bernoulli" else _categorical_darn_expectation
    expected = expectation(_cost)
    assert_mean_matches(grads, expected)


@pytest.mark.parametrize("case", CASES)
def test_baselines_cut_the_variance_of_the_plain_score_function(case):
    # A cost far from 0 and nearly linear, as -log p(x|z) is for a trained decoder: SF pays for the
    # offset, MuProp's expansion removes most of it.
    def cost(z, event_dims):
        return 100 + _cost(z, event_dims) / 10

    sf = _draws(case, "reinforce", 20_000, seed=3, cost=cost, normalize=False).var(0).sum()
    muprop = _draws(case, "muprop", 20_000, seed=3, cost=cost, normalize=False).var(0).sum()
    assert muprop < 0.01 * sf


def _rebar_codes_muprop(case: str, seed: int, scale_logits=(0.0, 0.0)):
    """MuProp with the REBAR code's learned eta0, eta1 (2 sigmoid(a)) and input baseline."""
    _, _, estimators = CASES[case]
    settings = {"name": "muprop", "normalize": False, "learned_scales": True, "baseline_hidden_size": 8}
    muprop = build_estimator(settings, estimators)
    torch.manual_seed(seed)  # the baseline network's weights
    muprop.bind_inputs(INPUT_SHAPE)
    with torch.no_grad():
        muprop.scale_logits.copy_(torch.tensor(scale_logits))
    return muprop


@pytest.mark.parametrize("case", CASES)
def test_muprop_with_learned_scales_and_an_input_baseline_is_unbiased_at_any_setting(case):
    # eta0 = 1.42, eta1 = 0.39 and an untrained baseline: the signal changes, its mean gradient
    # does not, as long as the correction is scaled by eta1 too (unscaled, the mean moves by
    # (1 - eta1) f'(mu) . grad mu: tried, max |z| far above 5).
    muprop = _rebar_codes_muprop(case, seed=6, scale_logits=(0.9, -1.4))
    assert_mean_matches(_draws(case, "muprop", 80_000, seed=6, estimator=muprop), _exact_gradient(case))


def test_muprop_trains_its_scales_and_baseline_to_a_smaller_variance():
    # A cost whose value MuProp's expansion at mu misjudges (a curved one) and that scales with the
    # image: eta0, eta1 and b_psi(x), trained on the squared signal, take the variance down.
    case = "bernoulli"
    inputs = torch.rand(256, *INPUT_SHAPE, generator=torch.Generator().manual_seed(8))
    scale = inputs.flatten(1).sum(-1)  # (256,)
    muprop = _rebar_codes_muprop(case, seed=8)

    def cost(z, event_dims):  # (*, 256, 3) -> (*, 256); f(mu) far from E[f]: cos of a sum of bits
        return scale * (5 + 10 * torch.cos(3 * (z.flatten(z.dim() - event_dims) @ W[:3])))

    def variance() -> float:
        family, logits, _ = CASES[case]
        rows = logits.expand(256, *logits.shape).clone().requires_grad_()
        grads = []
        for seed in range(40):  # 40 x 256 draws, each image's gradient its own row
            q = family(rows)
            generator = torch.Generator().manual_seed(100 + seed)
            surrogate = muprop.surrogate(q, lambda z: cost(z, 1), None, generator, inputs=inputs)
            (grad,) = torch.autograd.grad(surrogate.sum(), rows)
            grads.append(grad)
        return torch.stack(grads).var(0).sum().item()

    before = variance()
    optimizer = torch.optim.Adam(muprop.parameters(), lr=1e-2)
    family, logits, _ = CASES[case]
    for step in range(300):
        q = family(logits.expand(256, *logits.shape).clone().requires_grad_())
        generator = torch.Generator().manual_seed(step)
        optimizer.zero_grad()
        muprop.surrogate(q, lambda z: cost(z, 1), None, generator, inputs=inputs).sum().backward()
        optimizer.step()
    assert variance() < 0.5 * before  # measured: 0.16 of it


def test_variance_normalization_divides_by_the_running_std_in_training_only():
    normalizer = RunningNormalizer(enabled=True, decay=0.5)
    signal = torch.tensor([0.0, 20.0, 40.0])  # variance 400
    torch.testing.assert_close(normalizer(signal), signal / math.sqrt(200.0))  # 0.5 * 0 + 0.5 * 400
    torch.testing.assert_close(normalizer(signal), signal / math.sqrt(300.0))  # 0.5 * 200 + 0.5 * 400
    normalizer.eval()
    torch.testing.assert_close(normalizer(signal), signal / math.sqrt(300.0))  # frozen
    assert normalizer.variance.item() == pytest.approx(300.0)
    small = RunningNormalizer(enabled=True, decay=0.5)
    torch.testing.assert_close(small(torch.tensor([0.1, 0.2])), torch.tensor([0.1, 0.2]))  # max(1, std)
    off = RunningNormalizer(enabled=False)
    assert torch.equal(off(signal), signal)


def test_nvil_trains_its_baseline_towards_the_centred_cost():
    _, logits, estimators = CASES["bernoulli"]
    nvil = build_estimator("nvil", estimators)
    nvil.bind_inputs(INPUT_SHAPE)
    optimizer = torch.optim.Adam(nvil.parameters(), lr=1e-2)
    inputs = torch.rand(256, *INPUT_SHAPE, generator=torch.Generator().manual_seed(4))
    target = inputs.flatten(1).sum(-1) * 10  # a cost that depends on the image only
    losses = []
    for _ in range(300):
        q = IndependentBernoullis(logits.expand(256, 3).clone().requires_grad_())
        surrogate = nvil.surrogate(q, lambda z, t=target: t + 0 * z.sum(-1), None, inputs=inputs)
        optimizer.zero_grad()
        surrogate.sum().backward()
        optimizer.step()
        with torch.no_grad():
            losses.append(((target - nvil.cost_mean - nvil.baseline(inputs).squeeze(-1)) ** 2).mean().item())
    assert losses[-1] < 0.05 * losses[0]


# The KL inside the learning signal ---------------------------------------------------------
# A prior that is not uniform, so that the KL's gradient is not that of the entropy alone.
PRIOR_LOGITS = {"bernoulli": torch.tensor([-0.5, 0.8, 0.1]), "categorical": torch.tensor([0.4, -0.2, 0.0])}


def _elbo_draws(case: str, name: str, draws: int, seed: int, variance: float | None = None, **settings):
    """Per-draw gradients (draws, *logits.shape) of the -ELBO surrogate training differentiates
    (Estimator.elbo_terms with the analytic KL), one leaf row per draw; `variance` presets the
    normalizer's running variance and freezes it (eval mode)."""
    family, logits, estimators = CASES[case]
    rows = logits.expand(draws, *logits.shape).clone().requires_grad_()
    estimator = build_estimator({"name": name, **settings}, estimators)
    torch.manual_seed(seed)  # NVIL's baseline network: the same weights in every call with this seed
    estimator.bind_inputs(INPUT_SHAPE)
    if variance is not None:
        estimator.normalizer.variance.fill_(variance)
        estimator.eval()
    inputs = torch.rand(draws, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))
    q = family(rows)
    prior = family(PRIOR_LOGITS[case].expand_as(logits))
    f = lambda z: _cost(z, len(q.event_shape))  # noqa: E731
    terms = estimator.elbo_terms(q, f, prior, None, torch.Generator().manual_seed(seed), inputs=inputs)
    terms["neg_elbo"].sum().backward()
    return rows.grad


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["reinforce", "nvil", "muprop"])
def test_the_kl_inside_the_learning_signal_keeps_the_elbo_gradient_unbiased(case, name):
    # The exact estimator adds the analytic KL: the gradient of E_q[f] + KL(q || p) exactly.
    reference = _elbo_draws(case, "exact", 1, seed=0)[0]
    grads = _elbo_draws(case, name, 80_000, seed=5, normalize=False)
    assert torch.isfinite(grads).all()
    assert_mean_matches(grads, reference)


def test_darn_passes_the_kl_gradient_to_the_encoder():
    # log q(z|x) - log p(z) is linear in z, so DARN's -ELBO gradient is exact for a cost quadratic
    # in each bit: the KL's part reaches the encoder (a Taylor baseline at 1/2 without its
    # correction would cancel it, and the reconstruction's signal with it).
    family, logits, estimators = CASES["bernoulli"]
    prior = family(PRIOR_LOGITS["bernoulli"])
    leaf = logits.clone().requires_grad_()
    q = family(leaf)
    exact = build_estimator("exact", estimators)
    exact.elbo_terms(q, lambda z: _quadratic_cost(z, 1), prior, None)["neg_elbo"].backward()
    draws = 80_000
    rows = logits.expand(draws, *logits.shape).clone().requires_grad_()
    darn = build_estimator({"name": "darn", "normalize": False}, estimators)
    q = family(rows)
    generator = torch.Generator().manual_seed(7)
    darn.elbo_terms(q, lambda z: _quadratic_cost(z, 1), prior, None, generator)["neg_elbo"].sum().backward()
    assert_mean_matches(rows.grad, leaf.grad)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", ["reinforce", "nvil", "darn"])
def test_variance_normalization_scales_the_whole_encoder_gradient_kl_included(case, name):
    # With sigma = 10 frozen, the -ELBO's gradient to q's logits is exactly a tenth of the one
    # without normalization, draw by draw: the KL's part is scaled with the rest. (With the
    # analytic KL added outside the signal, its gradient was left at full size and pulled q onto
    # the prior: these estimators have no other path to the encoder.)
    normalized = _elbo_draws(case, name, 64, seed=6, variance=100.0)
    plain = _elbo_draws(case, name, 64, seed=6, variance=100.0, normalize=False)
    assert torch.isfinite(plain).all() and plain.abs().sum() > 0
    torch.testing.assert_close(normalized * 10, plain, rtol=1e-4, atol=1e-5)


def test_the_training_elbo_of_a_score_function_vae_is_a_one_sample_estimate_of_the_same_bound():
    # The VAE's training terms: recon + kl = neg_elbo for every estimator; with the KL inside the
    # signal, neg_elbo averages to the analytic -ELBO that the pathwise estimators report.
    from vae.model import build_vae
    from vae.networks import MLPDecoder, MLPEncoder

    torch.manual_seed(0)
    terms = {}
    for name in ("reinforce", "exact"):
        torch.manual_seed(0)
        model = build_vae(
            "vae.latents.BernoulliLatent",
            lambda **kw: MLPEncoder(hidden_sizes=[], **kw),
            lambda **kw: MLPDecoder(hidden_sizes=[], **kw),
            image_shape=INPUT_SHAPE,
            num_latents=3,
            prior="learned",
            estimator=name,
        )
        x = (torch.rand(20_000, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1)) < 0.5).float()
        with torch.no_grad():
            terms[name] = model.training_terms(x)
        torch.testing.assert_close(terms[name]["recon"] + terms[name]["kl"], terms[name]["neg_elbo"])
    sf, exact = terms["reinforce"]["neg_elbo"], terms["exact"]["neg_elbo"]
    assert abs(sf.mean() - exact.mean()) < 5 * sf.std() / math.sqrt(len(sf))
