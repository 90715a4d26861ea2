"""Estimators for one-hot categorical latents: they read q's logits (*batch, N, K)."""

from vae.estimators.base import registry
from vae.estimators.categorical.gumbel_rao import GumbelRao
from vae.estimators.categorical.gumbel_softmax import GumbelSoftmax
from vae.estimators.categorical.rebar import REBAR, RELAX
from vae.estimators.categorical.reinmax import ReinMax
from vae.estimators.categorical.st_gumbel import STGumbel
from vae.estimators.categorical.straight_through import StraightThrough

CATEGORICAL_ESTIMATORS = registry(GumbelSoftmax, STGumbel, StraightThrough, GumbelRao, ReinMax, REBAR, RELAX)

__all__ = [
    "CATEGORICAL_ESTIMATORS",
    "REBAR",
    "RELAX",
    "GumbelRao",
    "GumbelSoftmax",
    "ReinMax",
    "STGumbel",
    "StraightThrough",
]
