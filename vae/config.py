"""Turning config nodes into objects, with bad values reported by their config key.

Constructors check their own arguments and raise vae.validation.InvalidValue naming the
argument; here each config group is instantiated on its own so the error can name the full
key: ``tau.tau_min=2.0 is not allowed: must be < tau0 (1.0)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from vae.validation import InvalidValue

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value outside what is allowed, caught before any work starts."""


@contextmanager
def reported_as(key: str) -> Iterator[None]:
    """Re-raise an InvalidValue from inside the block as a ConfigError under config key `key`."""
    try:
        yield
    except InstantiationException as e:
        cause = e.__cause__
        if not isinstance(cause, InvalidValue):
            raise
        # Hydra names the failing node only in its message ("full_key: a.b").
        found = re.search(r"full_key: (\S+)", str(e))
        node = found.group(1) if found else key
        node = node if node.startswith(key) else f"{key}.{node}"
        raise ConfigError(f"{node}.{cause.name}={cause.value!r} is not allowed: {cause.allowed}") from None
    except InvalidValue as cause:
        raise ConfigError(f"{key}.{cause.name}={cause.value!r} is not allowed: {cause.allowed}") from None


def instantiate_node(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate(cfg.<key>) with bad values reported under `key`."""
    node = OmegaConf.select(cfg, key)
    with reported_as(key):
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)


def call_checked(key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) with bad values reported under `key`."""
    with reported_as(key):
        return fn(*args, **kwargs)
