"""Estimators for binary (Bernoulli) latents: they read q's logits (*batch, N)."""

from vae.estimators.base import registry
from vae.estimators.binary.arm import ARM
from vae.estimators.binary.concrete import GumbelSoftmax, STGumbel
from vae.estimators.binary.disarm import DisARM
from vae.estimators.binary.rebar import REBAR
from vae.estimators.binary.relax import RELAX
from vae.estimators.binary.straight_through import StraightThrough

BINARY_ESTIMATORS = registry(GumbelSoftmax, STGumbel, StraightThrough, ARM, DisARM, REBAR, RELAX)

__all__ = [
    "ARM",
    "BINARY_ESTIMATORS",
    "REBAR",
    "RELAX",
    "DisARM",
    "GumbelSoftmax",
    "STGumbel",
    "StraightThrough",
]
