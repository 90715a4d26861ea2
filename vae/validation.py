"""One error type for a bad setting, raised by constructors before any work starts.

Constructors name their own argument; the config layer (vae/config.py) adds the config path,
so the user reads ``tau.tau_min=2.0 is not allowed: must be <= tau.tau0 (1.0)``.
"""

from __future__ import annotations

from typing import Any


class InvalidValue(ValueError):
    """A setting with a value outside what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str) -> None:
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}={value!r} is not allowed: {allowed}")


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Raise InvalidValue(name, value, allowed) unless condition holds."""
    if not condition:
        raise InvalidValue(name, value, allowed)


def require_positive_int(name: str, value: Any) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        name,
        value,
        "must be a positive integer",
    )


def require_positive_float(name: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    require(ok and 0 < value < float("inf"), name, value, "must be a finite number > 0")
