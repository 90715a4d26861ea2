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


BINARY_LOGITS = torch.tensor([[0.5, -1.0, 2.0], [-0.3, 0.0, 1.2]])  # (batch 2, N 3)
TARGET, WEIGHT = torch.tensor([0.9, 0.1, 0.4]), torch.tensor([1.0, 2.0, 3.0])


def binary_cost(z):  # (*sample, *batch, N) -> (*sample, *batch)
    return (WEIGHT * (z - TARGET) ** 2).sum(-1)


def binary_exact_gradient() -> torch.Tensor:
    logits = BINARY_LOGITS.clone().requires_grad_()
    p = torch.sigmoid(logits)
    (exact,) = torch.autograd.grad((WEIGHT * (p * (1 - TARGET) ** 2 + (1 - p) * TARGET**2)).sum(), logits)
    return exact


def _library_estimator(name: str, family: dict, code_size: int):
    """The estimator as a user builds it; RELAX's network is sized for the code (N, or N * K)."""
    estimator = build_estimator(name, {**family, **DISCRETE_ESTIMATORS})
    if name == "relax":
        estimator.bind_size(code_size)
    return estimator


@pytest.mark.parametrize("form", BINARY_FORMS)
@pytest.mark.parametrize("name", ["disarm", "arm", "reinforce_loo", "reinforce", "rebar", "relax"])
def test_binary_estimators_on_torch_bernoullis_are_unbiased(name, form):
    torch.manual_seed(0)
    estimator = _library_estimator(name, BINARY_ESTIMATORS, BINARY_LOGITS.shape[-1])
    estimator.eval()  # running averages (the score function's normalizer) stay as built
    grads = _per_draw_gradients(estimator, BINARY_FORMS[form], BINARY_LOGITS, binary_cost)
    _assert_unbiased(grads, binary_exact_gradient())


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_a_learned_control_variate_trained_by_the_users_optimizer_lowers_the_variance(name):
    # The README's recipe: backward through the estimate gives the control variate's parameters
    # the gradient of the estimate's variance; any optimizer over estimator.parameters() follows it.
    torch.manual_seed(0)
    estimator = _library_estimator(name, BINARY_ESTIMATORS, BINARY_LOGITS.shape[-1])
    before = _per_draw_gradients(estimator, BINARY_FORMS["Bernoulli"], BINARY_LOGITS, binary_cost)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=1e-2)
    for _ in range(200):
        logits = BINARY_LOGITS.expand(64, *BINARY_LOGITS.shape).clone().requires_grad_()  # 64 draws a step
        optimizer.zero_grad()
        estimator(Bernoulli(logits=logits), binary_cost).sum().backward()
        optimizer.step()
    after = _per_draw_gradients(estimator, BINARY_FORMS["Bernoulli"], BINARY_LOGITS, binary_cost)
    _assert_unbiased(after, binary_exact_gradient())  # still unbiased, at any setting
    # Measured 0.66 (REBAR: its temperature and scale) and 0.18 (RELAX: and its network).
    assert after.var(0).sum() < 0.85 * before.var(0).sum()


CATEGORICAL_FORMS = {
    "OneHotCategorical": lambda logits: OneHotCategorical(logits=logits),
    "Independent(OneHotCategorical, 1)": lambda logits: Independent(OneHotCategorical(logits=logits), 1),
}


@pytest.mark.parametrize("form", CATEGORICAL_FORMS)
@pytest.mark.parametrize("name", ["reinforce_loo", "rebar", "relax"])
def test_categorical_estimators_on_torch_one_hot_categoricals_are_unbiased(name, form):
    torch.manual_seed(1)
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.4]])  # (N 2, K 3), one image
    values = torch.tensor([[1.0, 4.0, -2.0], [3.0, 0.0, 1.0]])  # cost of each class of each variable

    def cost(z):  # (*sample, N, K) -> (*sample,)
        return (z * values).sum((-2, -1))

    exact_logits = logits.clone().requires_grad_()
    (exact,) = torch.autograd.grad((exact_logits.softmax(-1) * values).sum(), exact_logits)
    estimator = _library_estimator(name, CATEGORICAL_ESTIMATORS, logits.numel())
    grads = _per_draw_gradients(estimator, CATEGORICAL_FORMS[form], logits, cost)
    _assert_unbiased(grads, exact)


def test_a_distribution_no_estimator_reads_is_refused_naming_what_is_allowed():
    with pytest.raises(InvalidValue, match="must be a Bernoulli or OneHotCategorical"):
        as_posterior(Normal(torch.zeros(3), torch.ones(3)))
    with pytest.raises(InvalidValue):
        as_posterior(Bernoulli(logits=torch.tensor(0.0)))  # no dimension to hold the variables


def test_the_readme_examples_run_as_pasted_and_give_finite_gradients():
    torch.manual_seed(0)  # the examples draw their target and weights
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The estimators in your own model") :]
    estimators, relax = re.findall(r"```python\n(.*?)```", section[: section.index("\n### ", 10)], re.S)
    namespace: dict = {}
    exec(compile(estimators, "README.md", "exec"), namespace)
    grad = namespace["logits"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # The RELAX example goes on in the same session: the logits' gradient again, then (its last
    # line) a step of the control variate's own optimizer on what the same backward gave it.
    namespace["logits"].grad = None
    up_to_the_step, step = relax.rstrip().rsplit("\n", 1)
    exec(compile(up_to_the_step, "README.md", "exec"), namespace)
    grad = namespace["logits"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    parameters = list(namespace["relax"].parameters())
    assert len(parameters) > 1  # lambda and the network's weights
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    before = [p.detach().clone() for p in parameters]
    exec(compile(step, "README.md", "exec"), namespace)
    assert not torch.equal(before[0], parameters[0])  # lambda moved
    assert sum(not torch.equal(b, p) for b, p in zip(before, parameters, strict=True)) > 1  # and the network
