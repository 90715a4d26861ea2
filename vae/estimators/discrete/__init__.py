"""Estimators for any discrete latent: they only sample codes from q, score them (log_prob) and,
for the exact one, enumerate them."""

from vae.estimators.base import registry
from vae.estimators.discrete.exact import Exact
from vae.estimators.discrete.reinforce_loo import ReinforceLOO

DISCRETE_ESTIMATORS = registry(ReinforceLOO, Exact)

__all__ = ["DISCRETE_ESTIMATORS", "Exact", "ReinforceLOO"]
