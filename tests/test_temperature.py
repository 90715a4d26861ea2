"""Every tau schedule's values at chosen steps, and the values each one refuses."""

import math

import pytest

from vae.errors import InvalidValue
from vae.temperature import (
    ConstantTemperature,
    CosineTemperature,
    ExponentialTemperature,
    LinearTemperature,
    SlopeTemperature,
)


def test_constant():
    schedule = ConstantTemperature(0.7)
    assert [schedule(t) for t in (0, 10, 10**6)] == [0.7, 0.7, 0.7]


def test_exponential_follows_jang_et_al_and_updates_every_n_steps():
    schedule = ExponentialTemperature(tau0=1.0, tau_min=0.5, rate=3e-5, update_every=1000)
    assert schedule(0) == 1.0
    assert schedule(999) == 1.0  # not updated before step 1000
    assert schedule(1000) == pytest.approx(math.exp(-0.03))
    assert schedule(1999) == pytest.approx(math.exp(-0.03))
    assert schedule(20_000) == pytest.approx(math.exp(-0.6))
    # exp(-3e-5 t) = 0.5 at t = 23105: the authors' notebook reaches tau_min near step 23k.
    assert schedule(23_000) > 0.5 and schedule(24_000) == 0.5
    assert schedule(10**7) == 0.5


def test_exponential_is_a_function_of_the_step_alone():
    schedule = ExponentialTemperature(tau0=2.0, tau_min=0.1, rate=1e-4, update_every=1)
    values = [schedule(t) for t in range(0, 5000, 7)]
    assert values == [schedule(t) for t in range(0, 5000, 7)]  # no hidden state
    assert schedule(4000) == pytest.approx(2.0 * math.exp(-0.4))  # not compounded


def test_linear():
    schedule = LinearTemperature(tau0=1.0, tau_min=0.5, num_steps=1000)
    assert [schedule(t) for t in (0, 500, 1000, 5000)] == pytest.approx([1.0, 0.75, 0.5, 0.5])


def test_cosine():
    schedule = CosineTemperature(tau0=1.0, tau_min=0.5, num_steps=1000)
    assert [schedule(t) for t in (0, 500, 1000, 5000)] == pytest.approx([1.0, 0.75, 0.5, 0.5])
    assert schedule(250) == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi / 4)))


def test_slope_grows_linearly_per_epoch_up_to_its_cap_as_chung_et_al():
    # min(5, 1 + 0.04 * epoch), an epoch of 550 steps: tau is the slope's reciprocal.
    schedule = SlopeTemperature(tau0=1.0, tau_min=0.2, rate=0.04, update_every=550)
    assert schedule(0) == 1.0 and schedule(549) == 1.0
    assert schedule(550) == pytest.approx(1 / 1.04)
    assert schedule(50_000) == pytest.approx(1 / (1 + 0.04 * 90))  # epoch 90: slope 4.6
    assert schedule(100 * 550) == pytest.approx(0.2) and schedule(10**7) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: ConstantTemperature(0.0), "tau0"),
        (lambda: ConstantTemperature(-1.0), "tau0"),
        (lambda: ExponentialTemperature(tau0=1.0, tau_min=0.0), "tau_min"),
        (lambda: ExponentialTemperature(tau0=1.0, tau_min=2.0), "tau_min"),
        (lambda: ExponentialTemperature(tau0=1.0, tau_min=1.0), "tau_min"),  # never anneals
        (lambda: ExponentialTemperature(rate=0.0), "rate"),
        (lambda: ExponentialTemperature(update_every=0), "update_every"),
        (lambda: LinearTemperature(num_steps=0), "num_steps"),
        (lambda: CosineTemperature(tau0=0.5, tau_min=0.9), "tau_min"),
        (lambda: SlopeTemperature(rate=0.0), "rate"),
        (lambda: SlopeTemperature(tau0=1.0, tau_min=1.0), "tau_min"),
    ],
)
def test_bad_values_are_named(build, name):
    with pytest.raises(InvalidValue) as error:
        build()
    assert error.value.name == name
    assert str(error.value).startswith(f"{name}=")
