"""Gradient estimators for discrete latents, grouped by the latent family they serve; the
interface is in base.py.

Selected with model.estimator=NAME (its default settings) or model/estimator=NAME (the config
group, whose settings can then be overridden: model.estimator.num_draws=100); the latent builds
it from the families it accepts (Latent.estimators).
"""

from vae.estimators.base import (
    Cost,
    Estimator,
    PathwiseEstimator,
    as_posterior,
    build_estimator,
    straight_through,
)
from vae.estimators.binary import BINARY_ESTIMATORS
from vae.estimators.categorical import CATEGORICAL_ESTIMATORS
from vae.estimators.discrete import DISCRETE_ESTIMATORS

__all__ = [
    "BINARY_ESTIMATORS",
    "CATEGORICAL_ESTIMATORS",
    "DISCRETE_ESTIMATORS",
    "Cost",
    "Estimator",
    "PathwiseEstimator",
    "as_posterior",
    "build_estimator",
    "straight_through",
]
