"""The VAE as a LightningModule: one class, any latent (vae/latents.py).

Loss, per image, in nats (Kingma & Welling 2014):

    -ELBO(x) = -E_q(z|x)[log p(x|z)] + KL(q(z|x) || p(z))
             =          recon        +        kl

with the analytic KL. In training, E_q[recon] and its gradient come from the latent:
reparameterization for the Gaussian, the chosen gradient estimator for the categorical
(vae/estimators/: Gumbel-Softmax at tau = schedule(global step) by default). In validation
and test z is one exact sample of q(z|x), one-hot for the categorical latent, so the logged
`neg_elbo` is the bound of the discrete model; for estimators that relax z, `neg_elbo_relaxed`
(the Gumbel-Softmax sample at the current tau) is logged beside it.

Every number is computed from the three distributions a user also gets:
`encode(x)` = q(z|x), `decode(z)` = p(x|z), `prior()` = p(z).

training_step makes the optimizer step itself (Lightning's manual optimization): zero_grad,
backward, optional gradient clipping, step. Lightning's automatic gradient accumulation
(Trainer(accumulate_grad_batches=...)) is not available with it; Lightning says so at the start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, kl_divergence

from vae.estimators import Estimator
from vae.latents import CategoricalLatent, GaussianLatent
from vae.temperature import TemperatureSchedule
from vae.validation import InvalidValue, require_positive_float

Factory = Callable[..., Any]
CONFIG_KEY = "vae_config"  # where a checkpoint holds the config that built the model


class NonFiniteLossError(RuntimeError):
    """The training loss became inf or NaN."""


class VAE(L.LightningModule):
    def __init__(
        self,
        latent: GaussianLatent | CategoricalLatent,
        encoder: Factory,
        decoder: Factory,
        optimizer: Factory,
        temperature: TemperatureSchedule | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        """
        Args:
            latent: defines q(z|x), p(z) and the training sample.
            encoder: called as encoder(out_features=latent.num_params) -> nn.Module.
            decoder: called as decoder(in_features=latent.code_size) -> nn.Module.
            optimizer: called as optimizer(params) -> torch.optim.Optimizer.
            temperature: tau schedule; required by latents that use a temperature.
            gradient_clip_val: if set, the gradient's global 2-norm is clipped to it before each
                update (the configs take it from trainer.gradient_clip_val).
        """
        super().__init__()
        if latent.uses_temperature and temperature is None:
            raise InvalidValue("temperature", None, "the categorical latent needs a tau schedule")
        if gradient_clip_val is not None:
            require_positive_float("gradient_clip_val", gradient_clip_val)
        # training_step makes the optimizer step itself (Lightning's manual optimization): the
        # same zero_grad, backward and step that automatic optimization makes, without its
        # closures and extra hook calls, which cost ~0.25 ms a step, 3% of a CPU epoch (vae.bench).
        self.automatic_optimization = False
        self.gradient_clip_val = gradient_clip_val
        self.latent = latent
        self.encoder: nn.Module = encoder(out_features=latent.num_params)
        self.decoder: nn.Module = decoder(in_features=latent.code_size)
        self.optimizer_factory = optimizer
        self.temperature = temperature if latent.uses_temperature else None
        # Optimizer steps the current weights have had: the trainer's step while fitting, the
        # checkpoint's after loading one (see on_load_checkpoint). tau for evaluation uses it.
        self.weights_step = 0
        # The resolved config that built this model (set by vae.checkpoint.build_model); saved
        # in every checkpoint so vae.load can rebuild the model from the checkpoint alone.
        self.vae_config: dict[str, Any] | None = None
        # torch.compile'd training_terms and its options, if compile_training() was called.
        self._compiled_training_terms: Callable[[Tensor, Any], dict[str, Tensor]] | None = None
        self._compile_options: dict[str, Any] | None = None
        # How often a non-finite loss is looked for with a host sync (see _check_finite).
        self.finite_check_every_n_steps: int | None = None
        self._first_nonfinite_step: Tensor | None = None

    # The three distributions -------------------------------------------------------------

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for binarized images x (B, 1, 28, 28); batch_shape (B,)."""
        return self.latent.posterior(self.encoder(x))

    def decode(self, z: Tensor) -> Distribution:
        """p(x|z), Bernoulli over pixels, for z (*batch, *event): batch_shape (*batch,)."""
        batch_shape = z.shape[: z.dim() - self.latent.event_ndim]
        logits = self.decoder(z.reshape(-1, self.latent.code_size)).float()  # (prod(batch), 1, 28, 28)
        logits = logits.view(*batch_shape, *logits.shape[1:])  # (*batch, 1, 28, 28)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)

    def prior(self) -> Distribution:
        """p(z)."""
        return self.latent.prior()

    # tau --------------------------------------------------------------------------------

    def tau_at(self, step: int) -> float | None:
        """tau at a global step, or None for latents without a temperature."""
        return None if self.temperature is None else self.temperature(step)

    @property
    def tau(self) -> float | None:
        """tau for the current weights (what evaluation uses)."""
        return self.tau_at(self.weights_step)

    # Loss -------------------------------------------------------------------------------

    def negative_elbo(self, x: Tensor, z: Tensor, q: Distribution) -> dict[str, Tensor]:
        """Per-image recon = -log p(x|z), kl = KL(q || p(z)) and their sum, each (B,)."""
        recon = -self.decode(z).log_prob(x)
        kl = kl_divergence(q, self.prior())
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    def training_terms(self, x: Tensor, temperature: float | None) -> dict[str, Tensor]:
        """Per-image recon, kl and neg_elbo (B,) whose gradient is the training gradient.

        recon is the latent's surrogate for E_q[-log p(x|z)]: its value is an estimate of that
        expectation, its gradient the estimator's (vae/estimators/base.py).
        """
        q = self.encode(x)
        recon = self.latent.expected_cost(q, lambda z: -self.decode(z).log_prob(x), temperature)
        kl = kl_divergence(q, self.prior())
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    def compile_training(self, **options: Any) -> None:
        """torch.compile the training computation (encoder, estimator, decoder, loss) and the
        optimizer's update (configure_optimizers compiles it when it builds the optimizer).

        tau reaches the compiled function as a 0-d tensor, so a new tau is a new input value
        rather than a new graph (a Python float would be baked in and recompiled every time).
        """
        self._compile_options = options
        self._compiled_training_terms = torch.compile(self.training_terms, **options)

    def step_terms(self, x: Tensor, tau: float | None) -> dict[str, Tensor]:
        """training_terms, through the compiled function once compile_training() was called."""
        if self._compiled_training_terms is None:
            return self.training_terms(x, tau)
        # A CPU 0-d tensor: an input of the graph that a CUDA graph reads without a sync.
        return self._compiled_training_terms(x, None if tau is None else torch.tensor(tau))

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        tau = self.tau_at(self.global_step)
        terms = self.step_terms(x, tau)
        loss = terms["neg_elbo"].mean()
        self._check_finite(loss)  # before the update
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizer, self.gradient_clip_val, gradient_clip_algorithm="norm")
        optimizer.step()
        # Lightning sends step metrics to the loggers every log_every_n_steps steps only; calling
        # self.log on the other steps costs ~0.1 ms each (and a host-to-device copy for tau).
        if self._trainer is None or self.trainer._logger_connector.should_update_logs:
            batch_size = x.shape[0]
            self.log("train/neg_elbo", loss, prog_bar=True, batch_size=batch_size)
            self.log("train/recon", terms["recon"].mean(), batch_size=batch_size)
            self.log("train/kl", terms["kl"].mean(), batch_size=batch_size)
            if tau is not None:
                self.log("train/tau", tau, prog_bar=True, batch_size=batch_size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.weights_step = self.global_step
        if self.global_step % (self.finite_check_every_n_steps or 1) == 0:
            self._raise_if_nonfinite()

    # Non-finite losses --------------------------------------------------------------------
    # On the CPU, reading a tensor's value costs nothing, so every step is checked before its
    # update: a NaN never reaches the weights. On a GPU that read would stall the queue every
    # step, so the first bad step is recorded on the device and read every
    # finite_check_every_n_steps steps and before each validation, which comes before any
    # checkpoint is written: checkpoints stay finite, the weights in memory may not.

    def _check_finite(self, loss: Tensor) -> None:
        if self.finite_check_every_n_steps in (None, 1):
            if not torch.isfinite(loss):
                self._raise_nonfinite(self.global_step)
            return
        step = torch.full_like(self._first_nonfinite_step, self.global_step)
        first_bad = (self._first_nonfinite_step < 0) & ~torch.isfinite(loss)
        self._first_nonfinite_step = torch.where(first_bad, step, self._first_nonfinite_step)

    def _raise_if_nonfinite(self) -> None:
        if self._first_nonfinite_step is not None and self._first_nonfinite_step.item() >= 0:
            self._raise_nonfinite(int(self._first_nonfinite_step.item()))

    def _raise_nonfinite(self, step: int) -> None:
        raise NonFiniteLossError(
            f"non-finite training loss at global step {step} with tau={self.tau_at(step)};"
            " checkpoints written so far are intact"
        )

    def on_validation_start(self) -> None:
        self._raise_if_nonfinite()

    def evaluation_terms(self, x: Tensor) -> dict[str, Tensor]:
        """What validation and test report, per image (B,): recon, kl and neg_elbo with one exact
        z ~ q(z|x) (one-hot for the categorical latent), and neg_elbo_relaxed (the relaxed sample
        at the current tau) for estimators that relax z."""
        q = self.encode(x)
        terms = self.negative_elbo(x, q.sample(), q)
        if isinstance(self.latent, CategoricalLatent) and self.latent.estimator.relaxes:
            terms["neg_elbo_relaxed"] = self.negative_elbo(x, self.latent.rsample(q, self.tau), q)["neg_elbo"]
        return terms

    def _evaluation_step(self, x: Tensor, stage: str) -> None:
        # Means over the whole split, weighted by batch size, across processes when distributed.
        log = {"batch_size": x.shape[0], "sync_dist": True}
        for name, value in self.evaluation_terms(x).items():
            self.log(f"{stage}/{name}", value.mean(), **log)

    def validation_step(self, x: Tensor, batch_idx: int) -> None:
        self._evaluation_step(x, "val")

    def test_step(self, x: Tensor, batch_idx: int) -> None:
        self._evaluation_step(x, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = self.optimizer_factory(self.parameters())
        if self._compile_options is not None:
            compile_optimizer_step(optimizer, **self._compile_options)
        return optimizer

    # Checkpoints ------------------------------------------------------------------------

    def on_train_start(self) -> None:
        self.weights_step = self.global_step
        if self.finite_check_every_n_steps is None:
            self.finite_check_every_n_steps = 1 if self.device.type == "cpu" else 50
        self._first_nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.vae_config is not None:
            checkpoint[CONFIG_KEY] = self.vae_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weights_step = checkpoint["global_step"]
        _count_automatic_steps_as_manual(checkpoint)


def _count_automatic_steps_as_manual(checkpoint: dict[str, Any]) -> None:
    """Resume a checkpoint written when Lightning made the optimizer step (automatic optimization).

    Lightning counts the global step in the loop that makes the step; that count now comes from
    the manual loop, which such a checkpoint holds at 0. Without this, a resumed run would start
    again at step 0 (and tau at tau0). Called before Lightning restores its loops from the dict.
    """
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = fit_loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer", {})
    manual = fit_loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if "step" in automatic and manual is not None and manual["total"]["completed"] == 0:
        fit_loop["epoch_loop.manual_optimization.optim_step_progress"] = copy.deepcopy(automatic["step"])


def compile_optimizer_step(optimizer: torch.optim.Optimizer, **options: Any) -> torch.optim.Optimizer:
    """Make optimizer.step(closure) run the closure eagerly, then the update compiled.

    Eager, the update is a series of kernels per parameter tensor, called from Python (about 10
    for the for-loop Adam, one for the fused Adam); compiled, it is generated code over all
    parameters with no Python in between (PyTorch's "compiling the optimizer" recipe). The
    closure (forward, backward, Lightning's hooks) stays outside this graph: the forward has its
    own (VAE.compile_training). The learning rate is a constant of the graph: a scheduler that
    changes it would recompile.
    """
    unpatched_step = type(optimizer).step  # the class's step; the instance's is replaced below

    def update() -> None:
        unpatched_step(optimizer)

    compiled_update = torch.compile(update, **options)

    def step(closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        compiled_update()
        return loss

    optimizer.step = step  # Lightning calls optimizer.step(closure=...) on this instance
    return optimizer


def gaussian_vae(dim: int, **kwargs: Any) -> VAE:
    """VAE with a dim-dimensional Gaussian latent (kwargs as for VAE)."""
    return VAE(GaussianLatent(dim), **kwargs)


def categorical_vae(
    num_variables: int, num_classes: int, estimator: str | Estimator = "gumbel_softmax", **kwargs: Any
) -> VAE:
    """VAE with num_variables categoricals of num_classes each, trained with `estimator`."""
    return VAE(CategoricalLatent(num_variables, num_classes, estimator), **kwargs)
