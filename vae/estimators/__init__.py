"""Gradient estimators for categorical latents, one per file; the interface is in base.py.

Selected with model.estimator=NAME (its default settings) or model/estimator=NAME (the config
group, whose settings can then be overridden: model.estimator.num_draws=100).
"""

from __future__ import annotations

from vae.estimators.base import Estimator, PathwiseEstimator
from vae.estimators.exact import Exact
from vae.estimators.gumbel_rao import GumbelRao
from vae.estimators.gumbel_softmax import GumbelSoftmax
from vae.estimators.reinforce_loo import ReinforceLOO
from vae.estimators.reinmax import ReinMax
from vae.estimators.st_gumbel import STGumbel
from vae.estimators.straight_through import StraightThrough
from vae.validation import InvalidValue

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (GumbelSoftmax, STGumbel, StraightThrough, GumbelRao, ReinMax, ReinforceLOO, Exact)
}


def as_estimator(estimator: str | Estimator) -> Estimator:
    """An Estimator, given one or the name of one (built with its default settings)."""
    if isinstance(estimator, Estimator):
        return estimator
    if estimator not in ESTIMATORS:
        raise InvalidValue("estimator", estimator, f"must be one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[estimator]()


__all__ = [
    "ESTIMATORS",
    "Estimator",
    "Exact",
    "GumbelRao",
    "GumbelSoftmax",
    "PathwiseEstimator",
    "ReinMax",
    "ReinforceLOO",
    "STGumbel",
    "StraightThrough",
    "as_estimator",
]
