"""Training objectives: the loss whose gradient trains the VAE (objective=NAME); the interface
is in base.py."""

from vae.objectives.base import Objective, build_objective, log_mean_exp, registry
from vae.objectives.elbo import ELBO
from vae.objectives.iwae import IWAE
from vae.objectives.vimco import VIMCO

OBJECTIVES = registry(ELBO, IWAE, VIMCO)

__all__ = ["ELBO", "IWAE", "OBJECTIVES", "VIMCO", "Objective", "build_objective", "log_mean_exp"]
