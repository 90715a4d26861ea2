"""Discrete-latent VAEs: a Gaussian VAE and a Gumbel-Softmax categorical VAE on MNIST.

import vae
model = vae.load("runs/categorical/.../checkpoints/last.ckpt")
q = model.encode(x)          # q(z|x), x binarized (B, 1, 28, 28)
p_x = model.decode(q.sample())   # p(x|z); p_x.log_prob(x) has shape (B,)
p_z = model.prior()          # p(z)
"""

from vae.checkpoint import load
from vae.gumbel import gumbel_max, gumbel_softmax
from vae.module import VAE

__all__ = ["VAE", "gumbel_max", "gumbel_softmax", "load"]
