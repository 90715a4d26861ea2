"""Discrete-latent VAEs: Gaussian, categorical (Gumbel-Softmax and other estimators) and more.

import vae
model = vae.load("runs/categorical/.../checkpoints/last.ckpt")   # a plain nn.Module
data = vae.load_data("runs/categorical/.../checkpoints/last.ckpt")  # its data, as in training
x = data.test_images[:16]            # (16, 1, 28, 28), binarized
q = model.encode(x)                  # q(z|x)
p_x = model.decode(q.sample())       # p(x|z); p_x.log_prob(x) has shape (16,)
p_z = model.prior()                  # p(z)
"""

from vae.checkpoint import load, load_data
from vae.gumbel import gumbel_max, gumbel_softmax
from vae.model import VAE

__all__ = ["VAE", "gumbel_max", "gumbel_softmax", "load", "load_data"]
