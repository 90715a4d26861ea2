"""The seed's claims about Gumbel-Max and Gumbel-Softmax, as seeded statistical tests.

Each chi-square test rejects at p < 1e-4, so a correct sampler fails it with probability
1e-4 per seed (the seeds are fixed, so the outcome is deterministic); the `power` tests show
the same test rejects a slightly wrong sampler, so passing means something.
"""

import pytest
import torch
from scipy.stats import chisquare

from vae.gumbel import check_temperature, gumbel_max, gumbel_noise, gumbel_softmax

ALPHA = 1e-4
LOGITS = torch.tensor([2.0, 0.5, -1.0, 0.0, 1.0, -3.0])  # K = 6, probabilities 0.3% .. 55%


def _chi2_pvalue(indices: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(indices, minlength=len(probs)).double()
    probs = probs.double() / probs.double().sum()
    expected = probs * counts.sum()
    return chisquare(counts.numpy(), expected.numpy()).pvalue


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gumbel_max_samples_the_categorical_exactly():
    logits = LOGITS.expand(200_000, -1)
    samples = gumbel_max(logits, generator=_generator(0))
    assert _chi2_pvalue(samples.argmax(-1), torch.softmax(LOGITS, -1)) > ALPHA


def test_chi2_test_has_power_against_a_slightly_wrong_distribution():
    # Logits scaled by 1.05 move each probability by at most ~1.5 points: the test must see it.
    samples = gumbel_max((1.05 * LOGITS).expand(200_000, -1), generator=_generator(0))
    assert _chi2_pvalue(samples.argmax(-1), torch.softmax(LOGITS, -1)) < ALPHA


@pytest.mark.parametrize("tau", [0.1, 1.0, 5.0])
def test_argmax_of_relaxed_sample_is_categorical(tau):
    # The argmax of softmax((logits + g) / tau) is the Gumbel-Max sample for every tau.
    y = gumbel_softmax(LOGITS.expand(100_000, -1), tau, generator=_generator(1))
    assert _chi2_pvalue(y.argmax(-1), torch.softmax(LOGITS, -1)) > ALPHA


def test_relaxed_samples_lie_on_the_simplex():
    y = gumbel_softmax(LOGITS.expand(1000, -1), 0.7, generator=_generator(2))
    assert (y >= 0).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(1000))


def test_hard_sample_is_exactly_one_hot_with_the_soft_gradient():
    logits = torch.randn(500, 20, 10, generator=_generator(3), requires_grad=True)
    weights = torch.randn(500, 20, 10, generator=_generator(4))

    y_hard = gumbel_softmax(logits, 0.5, hard=True, generator=_generator(5))
    assert set(y_hard.detach().unique().tolist()) == {0.0, 1.0}
    assert (y_hard.detach().sum(-1) == 1).all()  # exact: no 0.9999999
    (grad_hard,) = torch.autograd.grad((weights * y_hard).sum(), logits)

    y_soft = gumbel_softmax(logits, 0.5, hard=False, generator=_generator(5))  # same noise
    assert torch.equal(y_hard.detach().argmax(-1), y_soft.detach().argmax(-1))
    (grad_soft,) = torch.autograd.grad((weights * y_soft).sum(), logits)
    torch.testing.assert_close(grad_hard, grad_soft)
    assert grad_hard.abs().sum() > 0


def test_relaxed_sample_approaches_one_hot_as_tau_goes_to_zero():
    logits = LOGITS.expand(10_000, -1)
    largest = [
        gumbel_softmax(logits, tau, generator=_generator(6)).max(-1).values.mean() for tau in (1.0, 0.1, 0.01)
    ]
    assert largest[0] < largest[1] < largest[2]
    assert largest[2] > 0.995


def test_relaxed_sample_approaches_uniform_as_tau_grows():
    y = gumbel_softmax(LOGITS.expand(10_000, -1), 1e4, generator=_generator(7))
    assert (y - 1 / 6).abs().max() < 1e-2
    y_moderate = gumbel_softmax(LOGITS.expand(10_000, -1), 1.0, generator=_generator(7))
    assert (y_moderate - 1 / 6).abs().max() > 0.5


def test_noise_is_finite_even_when_the_uniform_draw_is_exactly_zero_or_nearly_one(monkeypatch):
    edge = torch.tensor([0.0, torch.finfo(torch.float32).tiny, 0.5, 1 - 2**-24])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: edge.clone())
    g = gumbel_noise((4,))
    assert torch.isfinite(g).all()
    assert g[0] == g[1]  # u = 0 is clamped to the smallest normal number


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hard", [False, True])
def test_no_inf_or_nan_over_a_million_draws_at_tiny_tau_with_extreme_logits(dtype, hard):
    # 1e6 categorical draws of K = 10: logits from -1e30 to 1e30 and ties, at tau = 1e-30
    # (far below anything a schedule would use: every tau > 0 is allowed).
    generator = _generator(8)
    base = torch.tensor([-1e30, -1e4, -50.0, 0.0, 0.0, 1e-3, 30.0, 88.0, 1e4, 1e30])
    shuffled = torch.stack([base[torch.randperm(10, generator=generator)] for _ in range(1000)])
    logits = shuffled.repeat(1000, 1).to(dtype).requires_grad_()  # (1e6, 10)
    for tau in (1e-30, 1e-3):
        y = gumbel_softmax(logits, tau, hard=hard, generator=generator)
        assert torch.isfinite(y).all()
        (grad,) = torch.autograd.grad((y * torch.arange(10.0)).sum(), logits)
        assert torch.isfinite(grad).all()


def test_noise_is_drawn_in_float32_under_bfloat16_autocast():
    logits = torch.randn(4, 10).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gumbel_softmax(logits, 0.5)
    assert y.dtype == torch.float32


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_tau_is_rejected(tau):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        gumbel_softmax(LOGITS, tau)
    with pytest.raises(ValueError):
        check_temperature(tau)
