"""The estimators as a library: called on torch's own distributions, in someone else's model.

The mean gradient over many draws must match the exact gradient of E_q[cost] (closed form for a
separable cost), whichever form of q the caller built; and the README's example must run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, OneHotCategorical

from vae.errors import InvalidValue
from vae.estimators import (
    BINARY_ESTIMATORS,
    CATEGORICAL_ESTIMATORS,
    DISCRETE_ESTIMATORS,
    as_posterior,
    build_estimator,
)

REPO = Path(__file__).resolve().parents[1]
DRAWS = 4000


def _per_draw_gradients(estimator, make_q, logits: torch.Tensor, cost) -> torch.Tensor:
    """(DRAWS, *logits.shape): the estimator's gradient for each of DRAWS independent draws."""
    copies = logits.detach().expand(DRAWS, *logits.shape).clone().requires_grad_()
    estimate = estimator(make_q(copies), cost)  # (DRAWS, *batch)
    (grad,) = torch.autograd.grad(estimate.sum(), copies)
    return grad


def _assert_unbiased(grads: torch.Tensor, exact: torch.Tensor) -> None:
    assert torch.isfinite(grads).all()
    mean, se = grads.mean(0), grads.std(0) / DRAWS**0.5
    z = ((mean - exact).abs() / (se + 1e-8)).max().item()
    assert z < 5, f"max z = {z:.1f}: mean {mean} against exact {exact}"
    assert (mean - exact).abs().max() < 0.2 * exact.abs().max()  # and near it, not only noisy


BINARY_FORMS = {
    "Bernoulli": lambda logits: Bernoulli(logits=logits),
    "Independent(Bernoulli, 1)": lambda logits: Independent(Bernoulli(logits=logits), 1),
}


@pytest.mark.parametrize("form", BINARY_FORMS)
@pytest.mark.parametrize("name", ["disarm", "arm", "reinforce_loo", "reinforce"])
def test_binary_estimators_on_torch_bernoullis_are_unbiased(name, form):
    torch.manual_seed(0)
    logits = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.0, 1.2]])  # (batch 2, N 3)
    target = torch.tensor([0.9, 0.1, 0.4])
    weight = torch.tensor([1.0, 2.0, 3.0])

    def cost(z):  # (*sample, *batch, N) -> (*sample, *batch)
        return (weight * (z - target) ** 2).sum(-1)

    exact_logits = logits.clone().requires_grad_()
    p = torch.sigmoid(exact_logits)
    expected = (weight * (p * (1 - target) ** 2 + (1 - p) * target**2)).sum()
    (exact,) = torch.autograd.grad(expected, exact_logits)
    estimator = build_estimator(name, {**BINARY_ESTIMATORS, **DISCRETE_ESTIMATORS})
    estimator.eval()  # running averages (the score function's normalizer) stay as built
    _assert_unbiased(_per_draw_gradients(estimator, BINARY_FORMS[form], logits, cost), exact)


CATEGORICAL_FORMS = {
    "OneHotCategorical": lambda logits: OneHotCategorical(logits=logits),
    "Independent(OneHotCategorical, 1)": lambda logits: Independent(OneHotCategorical(logits=logits), 1),
}


@pytest.mark.parametrize("form", CATEGORICAL_FORMS)
def test_leave_one_out_on_torch_one_hot_categoricals_is_unbiased(form):
    torch.manual_seed(1)
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.4]])  # (N 2, K 3), one image
    values = torch.tensor([[1.0, 4.0, -2.0], [3.0, 0.0, 1.0]])  # cost of each class of each variable

    def cost(z):  # (*sample, N, K) -> (*sample,)
        return (z * values).sum((-2, -1))

    exact_logits = logits.clone().requires_grad_()
    (exact,) = torch.autograd.grad((exact_logits.softmax(-1) * values).sum(), exact_logits)
    estimator = build_estimator("reinforce_loo", {**CATEGORICAL_ESTIMATORS, **DISCRETE_ESTIMATORS})
    grads = _per_draw_gradients(estimator, CATEGORICAL_FORMS[form], logits, cost)
    _assert_unbiased(grads, exact)


def test_a_distribution_no_estimator_reads_is_refused_naming_what_is_allowed():
    with pytest.raises(InvalidValue, match="must be a Bernoulli or OneHotCategorical"):
        as_posterior(Normal(torch.zeros(3), torch.ones(3)))
    with pytest.raises(InvalidValue):
        as_posterior(Bernoulli(logits=torch.tensor(0.0)))  # no dimension to hold the variables


def test_the_readme_example_runs_and_gives_every_logit_a_finite_gradient():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The estimators in your own model") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n### ", 10)], re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    grad = namespace["logits"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
