"""Every error type of the project, and the value checks constructors use, in one place.

A constructor names its own argument (InvalidValue); the config layer (vae/config.py) adds the
config key, so the user reads ``tau.tau_min=2.0 is not allowed: must be <= tau.tau0 (1.0)``.
The run layer turns the expected failures below into one line on stderr and a non-zero exit.
"""

from __future__ import annotations

from typing import Any


class InvalidValue(ValueError):
    """A setting with a value outside what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}={value!r} is not allowed: {allowed}")


class ConfigError(ValueError):
    """A config value outside what is allowed, caught before any work starts."""


class RunDirectoryBusy(ConfigError):
    """Another process is running in this run directory."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not one of this project's."""


class DataError(RuntimeError):
    """The data is missing, unreadable, or not what the config says."""


class NonFiniteLossError(RuntimeError):
    """The training loss became inf or NaN."""


class DivergedError(RuntimeError):
    """Training diverged: a weight or buffer became inf or NaN, or the validation -ELBO far
    exceeds the loss training started from."""


# The failures a run reports in one line (no traceback): the user's input, data or training.
EXPECTED_FAILURES = (ConfigError, DataError, NonFiniteLossError, DivergedError)


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML's true is an int to isinstance)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Raise InvalidValue(name, value, allowed) unless condition holds."""
    if not condition:
        raise InvalidValue(name, value, allowed)


def require_int_at_least(name: str, value: Any, minimum: int) -> None:
    require(is_int(value) and value >= minimum, name, value, f"must be an integer >= {minimum}")


def require_positive_int(name: str, value: Any) -> None:
    require(is_int(value) and value > 0, name, value, "must be a positive integer")


def require_positive_float(name: str, value: Any) -> None:
    require(is_number(value) and 0 < value < float("inf"), name, value, "must be a finite number > 0")
