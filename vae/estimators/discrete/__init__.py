"""Estimators for any discrete latent: they only sample codes from q, score them (log_prob), take
q's mean or, for the exact one, enumerate codes. The score-function family (Jang et al. 2017,
section 3.2): SF, NVIL, DARN, MuProp, and REINFORCE with a leave-one-out baseline."""

from vae.estimators.base import registry
from vae.estimators.discrete.darn import DARN
from vae.estimators.discrete.exact import Exact
from vae.estimators.discrete.muprop import MuProp
from vae.estimators.discrete.nvil import NVIL
from vae.estimators.discrete.reinforce import Reinforce
from vae.estimators.discrete.reinforce_loo import ReinforceLOO

DISCRETE_ESTIMATORS = registry(Reinforce, NVIL, DARN, MuProp, ReinforceLOO, Exact)

__all__ = ["DARN", "DISCRETE_ESTIMATORS", "NVIL", "Exact", "MuProp", "Reinforce", "ReinforceLOO"]
