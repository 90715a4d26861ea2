"""The latent variables a VAE can have; the interface every one implements is in base.py.

To add a latent: one file here with a subclass of Latent, a line below, its estimators (if it
needs any) in vae/estimators/<family>/, and a config in configs/model/.
"""

from vae.latents.base import MAX_ENUMERATED_CODES, Latent
from vae.latents.bernoulli import BernoulliLatent, IndependentBernoullis
from vae.latents.categorical import CategoricalLatent, OneHotCategoricals
from vae.latents.gaussian import DiagonalNormal, GaussianLatent
from vae.latents.two_layer import TwoLayerBernoulliLatent, TwoLayerPrior

__all__ = [
    "MAX_ENUMERATED_CODES",
    "BernoulliLatent",
    "IndependentBernoullis",
    "CategoricalLatent",
    "DiagonalNormal",
    "GaussianLatent",
    "Latent",
    "OneHotCategoricals",
    "TwoLayerBernoulliLatent",
    "TwoLayerPrior",
]
