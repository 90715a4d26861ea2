"""The command-line tools, run as python -m vae.<tool> (vae/<tool>.py names each command):

evaluate  the test-set numbers of a checkpoint (-ELBO, the k-sample bound, exact NLL, latent health)
sample    prior samples, reconstructions and latent traversals as PNGs
diagnose  gradient estimators' bias and variance against the exact gradient
report    tables of a sweep's runs, into the README's marked blocks
bench     training speed of this project's loop against a bare PyTorch loop

common.py holds what they share: loading a checkpoint's model and data, the device, one-line errors.
"""
