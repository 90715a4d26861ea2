"""Temperature (tau) schedules for the Gumbel-Softmax relaxation and the other tau-reading estimators.

Every schedule is a pure function of the global training step t (the number of optimizer
steps taken so far): never reset per epoch, never compounded, so resuming from a checkpoint
(which restores t) restores tau exactly.

- Constant:    tau = tau0
- Exponential: tau = max(tau_min, tau0 * exp(-rate * t_N)), t_N = N * floor(t / N)
               (Jang et al. 2017, updated every N steps; the authors' notebook uses
               rate = 3e-5, N = 1000, tau_min = 0.5, which reaches 0.5 near step 23k)
- Linear:      tau0 -> tau_min over num_steps, then tau_min
- Cosine:      tau_min + (tau0 - tau_min) * (1 + cos(pi * t / num_steps)) / 2, then tau_min
- Slope:       1 / tau = min(1 / tau_min, 1 / tau0 + rate * floor(t / N)): the slope of the
               straight-through estimator's sigmoid or softmax grows linearly (slope annealing,
               Chung et al. 2017: min(5, 1 + 0.04 * epoch), i.e. tau0 = 1, tau_min = 0.2,
               rate = 0.04, N = the steps of one epoch)

Every schedule takes the same five settings (tau0, tau_min, rate, update_every, num_steps) and
reads those its formula uses, so that one command sweeps over schedules with any of them set:
`python train.py -m tau=linear,cosine,constant tau.num_steps=400`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from vae.errors import require, require_positive_float, require_positive_int


class TemperatureSchedule(ABC):
    """tau as a function of the global step."""

    def __init__(
        self,
        tau0: float = 1.0,
        tau_min: float = 0.5,
        rate: float = 3e-5,
        update_every: int = 1000,
        num_steps: int = 23_000,
    ) -> None:
        require_positive_float("tau0", tau0)
        self.tau0, self.tau_min, self.rate = float(tau0), tau_min, rate
        self.update_every, self.num_steps = update_every, num_steps

    @abstractmethod
    def __call__(self, step: int) -> float: ...


class ConstantTemperature(TemperatureSchedule):
    """tau = tau0 (the other settings are not read)."""

    def __call__(self, step: int) -> float:
        return self.tau0


class _AnnealedTemperature(TemperatureSchedule):
    """Shared checks: tau decays from tau0 to tau_min > 0."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        require_positive_float("tau_min", self.tau_min)
        # tau_min == tau0 is the peer bug that silently never anneals: say so.
        require(
            self.tau_min < self.tau0,
            "tau_min",
            self.tau_min,
            f"must be < tau0 ({self.tau0}); for a fixed tau use tau=constant",
        )
        self.tau_min = float(self.tau_min)


class _SteppedTemperature(_AnnealedTemperature):
    """Shared checks of the schedules that change by `rate` every `update_every` steps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        require_positive_float("rate", self.rate)
        require_positive_int("update_every", self.update_every)
        self.rate = float(self.rate)


class ExponentialTemperature(_SteppedTemperature):
    """Jang et al.'s schedule (reads tau0, tau_min, rate, update_every)."""

    def __call__(self, step: int) -> float:
        t = step - step % self.update_every  # tau changes only every `update_every` steps
        return max(self.tau_min, self.tau0 * math.exp(-self.rate * t))


class _FixedLengthTemperature(_AnnealedTemperature):
    """Anneals from tau0 at step 0 to tau_min at step num_steps, then stays at tau_min (reads tau0,
    tau_min, num_steps)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        require_positive_int("num_steps", self.num_steps)

    def progress(self, step: int) -> float:
        """Fraction of the annealing done at `step`, in [0, 1]."""
        return min(step / self.num_steps, 1.0)


class LinearTemperature(_FixedLengthTemperature):
    def __call__(self, step: int) -> float:
        return self.tau0 + (self.tau_min - self.tau0) * self.progress(step)


class CosineTemperature(_FixedLengthTemperature):
    def __call__(self, step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress(step)))  # 1 -> 0
        return self.tau_min + (self.tau0 - self.tau_min) * cosine


class SlopeTemperature(_SteppedTemperature):
    """Slope annealing (reads tau0, tau_min, rate, update_every): the slope 1/tau grows by `rate`
    every `update_every` steps, from 1/tau0 up to 1/tau_min."""

    def __call__(self, step: int) -> float:
        slope = min(1 / self.tau_min, 1 / self.tau0 + self.rate * (step // self.update_every))
        return 1 / slope
