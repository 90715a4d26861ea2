"""The training system: a LightningModule around the plain VAE (vae/model.py).

It owns what training needs and the model does not: the optimizer and its step, the tau
schedule, logging, the non-finite guard, and what a checkpoint records. The loss is the model's
per-image loss (training_terms: the objective's, by default the -ELBO with the latent's gradient
estimate at tau = schedule(global step)), averaged over the batch; validation and test report
evaluation_terms, drawn from a generator of their own.

training_step makes the optimizer step itself (Lightning's manual optimization): zero_grad,
backward, optional gradient clipping, step. Why: a model may train several optimizers at once (a
learned prior's, REBAR's and RELAX's control variates': group_optimizers), which Lightning 2
allows under manual optimization only. It does not buy speed: `python -m vae.bench` times the
same training both ways (its `automatic` loop sets Lightning's automatic_optimization flag back
on, for a model with one optimizer), and the two were within noise (README, Speed).
Lightning's automatic gradient accumulation (Trainer(accumulate_grad_batches=...)) is not
available with it; Lightning says so at the start.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn

from vae import compat
from vae.checkpoint import CONFIG_KEY, upgrade_checkpoint
from vae.errors import DivergedError, InvalidValue, NonFiniteLossError, require, require_positive_float
from vae.model import VAE
from vae.temperature import TemperatureSchedule

Factory = Callable[..., Any]


# A run has diverged when its validation -ELBO exceeds this many times the larger of the first
# training step's loss and the cost of coding every pixel with a fair coin (D log 2 nats): a
# learning rate that blows up reaches 10^4 to 10^7 nats, while a large first step of Adam can
# lift a young model to about twice its start for a moment (measured: 1213 nats at step 1, lr 3e-2).
DIVERGENCE_FACTOR = 10.0


class VAETraining(L.LightningModule):
    def __init__(
        self,
        model: VAE,
        optimizer: Factory,
        tau_schedule: TemperatureSchedule | None = None,
        gradient_clip_val: float | None = None,
        evaluation_seed: int = 0,
        lr_schedule: Factory | None = None,
        group_optimizers: dict[str, Factory] | None = None,
    ) -> None:
        """
        Args:
            model: the VAE to train.
            optimizer: called as optimizer(params) -> torch.optim.Optimizer.
            tau_schedule: tau as a function of the global step; required by latents that use a
                temperature (below the training system, tau is a number: the schedule's value).
            gradient_clip_val: if set, the gradient's global 2-norm is clipped to it before each
                update (train.py takes it from trainer.gradient_clip_val).
            evaluation_seed: seeds the generator that validation and test draw z from, afresh at
                the start of each: the same weights give the same numbers whatever ran before, and
                runs with the same seed are compared on the same noise (train.py: the run's seed).
            lr_schedule: called as lr_schedule(optimizer) -> a torch.optim.lr_scheduler, stepped
                after every optimizer step; None: the optimizer's learning rate throughout.
            group_optimizers: {group: factory}: an optimizer of its own for each named group of
                the model's parameters (VAE.parameter_groups: "prior", "control_variate"),
                called as factory(params); `optimizer` then leaves them out (the DisARM benchmark
                trains the prior's logits by SGD and the rest by Adam; REBAR and RELAX train
                their control variates by Adam). A group the model lacks is refused.
        """
        super().__init__()
        if model.uses_temperature and tau_schedule is None:
            raise InvalidValue("tau", None, f"the {model.latent.describe()} latent needs a tau schedule")
        if gradient_clip_val is not None:
            require_positive_float("gradient_clip_val", gradient_clip_val)
        # training_step makes the optimizer step itself (Lightning's manual optimization): the
        # same zero_grad, backward and step that automatic optimization makes, for any number of
        # optimizers (see the module docstring).
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory = optimizer
        self.lr_schedule_factory = lr_schedule
        groups = model.parameter_groups()
        self.group_optimizer_factories = dict(group_optimizers or {})
        for group in self.group_optimizer_factories:
            require(
                group in groups,
                "group_optimizers",
                group,
                f"this model's parameter groups are: {', '.join(groups) or 'none'}",
            )
        self.tau_schedule = tau_schedule if model.uses_temperature else None
        self.gradient_clip_val = gradient_clip_val
        self.evaluation_seed = evaluation_seed
        self._evaluation_generator: torch.Generator | None = None
        # Optimizer steps the current weights have had: the trainer's step while fitting, the
        # checkpoint's after loading one (see on_load_checkpoint). tau for evaluation uses it.
        self.weights_step = 0
        # The resolved run config (set by train.py); saved in every checkpoint so that vae.load and
        # the tools rebuild the model, its tau schedule and its data from the checkpoint alone.
        self.run_config: dict[str, Any] | None = None
        # torch.compile'd training_terms and its options, if compile_training() was called.
        self._compiled_training_terms: Callable[[Tensor, Any], dict[str, Tensor]] | None = None
        self._compile_options: dict[str, Any] | None = None
        # How often a non-finite loss is looked for with a host sync (see _check_finite).
        self.finite_check_every_n_steps: int | None = None
        self._first_nonfinite_step: Tensor | None = None
        # The random states a resumed run continues from (on_load_checkpoint -> on_train_start).
        self._resumed_random_state: dict[str, Any] | None = None
        # The training loss at step 0 (what divergence is measured against), kept in checkpoints.
        self.initial_loss: float | None = None

    # tau --------------------------------------------------------------------------------

    def tau_at(self, step: int) -> float | None:
        """tau at a global step, or None for latents without a temperature."""
        return None if self.tau_schedule is None else self.tau_schedule(step)

    @property
    def tau(self) -> float | None:
        """tau for the current weights (what evaluation uses)."""
        return self.tau_at(self.weights_step)

    # Training ---------------------------------------------------------------------------

    def compile_training(self, **options: Any) -> None:
        """torch.compile the training computation (encoder, estimator, decoder, loss) and the
        optimizer's update (configure_optimizers compiles it when it builds the optimizer).

        tau reaches the compiled function as a 0-d tensor, so a new tau is a new input value
        rather than a new graph (a Python float would be baked in and recompiled every time).
        """
        self._compile_options = options
        self._compiled_training_terms = torch.compile(self.model.training_terms, **options)

    def step_terms(self, x: Tensor, tau: float | None) -> dict[str, Tensor]:
        """The model's training_terms, through the compiled function once compile_training() was called."""
        if self._compiled_training_terms is None:
            return self.model.training_terms(x, tau)
        # A CPU 0-d tensor: an input of the graph that a CUDA graph reads without a sync.
        return self._compiled_training_terms(x, None if tau is None else torch.tensor(tau))

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        tau = self.tau_at(self.global_step)
        terms = self.step_terms(x, tau)
        loss = terms["loss"].mean()
        self._check_finite(loss)  # before the update
        if self.initial_loss is None:  # once: a host sync on an accelerator
            self.initial_loss = float(loss.detach())
        if not self.automatic_optimization:  # on unless a benchmark turned it off (see the top)
            self._update(loss)
        # Lightning sends step metrics to the loggers every log_every_n_steps steps only; calling
        # self.log on the other steps would cost time (and a host-to-device copy for tau).
        trainer = compat.attached_trainer(self)
        if trainer is None or compat.logs_this_step(trainer):
            batch_size = x.shape[0]
            if self.model.objective.loss_is_neg_elbo:
                self.log("train/neg_elbo", loss, prog_bar=True, batch_size=batch_size)
            else:  # a multi-sample objective: its loss (-L_k), and the mean one-sample -ELBO
                self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
                self.log("train/neg_elbo", terms["neg_elbo"].mean(), batch_size=batch_size)
            self.log("train/recon", terms["recon"].mean(), batch_size=batch_size)
            self.log("train/kl", terms["kl"].mean(), batch_size=batch_size)
            if tau is not None:
                self.log("train/tau", tau, prog_bar=True, batch_size=batch_size)
        return loss

    def _update(self, loss: Tensor) -> None:
        """What automatic optimization would do: zero_grad, backward, clip, step every optimizer."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizers[0], self.gradient_clip_val, gradient_clip_algorithm="norm")
        main, *groups = optimizers
        main.step()  # Lightning counts this step: global_step is the number of batches trained
        for optimizer in groups:
            # Each LightningOptimizer's step adds one to trainer.global_step (Lightning issue
            # #17958), so that with a group optimizer max_steps=N trained N/2 batches, and tau,
            # logging and checkpoints ran at twice the pace. The groups step their torch optimizer
            # itself; a gradient-scaled precision (16-mixed), which these would bypass, is
            # refused with group optimizers (vae.run.checks.check_trainer).
            optimizer.optimizer.step()
        if self.lr_schedule_factory is not None:
            self.lr_schedulers().step()  # per optimizer step; Lightning checkpoints its state

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.weights_step = self.global_step
        if self.global_step % (self.finite_check_every_n_steps or 1) == 0:
            self._raise_if_nonfinite()

    def main_parameters(self) -> list[nn.Parameter]:
        """The parameters the main optimizer trains: all but the groups with an optimizer of their own."""
        groups = self.model.parameter_groups()
        own = {id(p) for group in self.group_optimizer_factories for p in groups[group]}
        return [p for p in self.model.parameters() if id(p) not in own]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.main_parameters())
        if self._compile_options is not None:
            compile_optimizer_step(optimizer, **self._compile_options)
        configured: dict[str, Any] = {"optimizer": optimizer}
        if self.lr_schedule_factory is not None:
            configured["lr_scheduler"] = {
                "scheduler": self.lr_schedule_factory(optimizer),
                "interval": "step",
            }
        if not self.group_optimizer_factories:
            return configured if len(configured) > 1 else optimizer
        groups = self.model.parameter_groups()
        own = [{"optimizer": make(groups[group])} for group, make in self.group_optimizer_factories.items()]
        return [configured, *own]

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

    def on_train_start(self) -> None:
        if self._resumed_random_state is not None:
            # Here, after Lightning has restored everything and just before the first step: the
            # training noise continues exactly where the checkpoint left it.
            set_random_state(self._resumed_random_state)
            self._resumed_random_state = None
        self.weights_step = self.global_step
        if self.finite_check_every_n_steps is None:
            self.finite_check_every_n_steps = 1 if self.device.type == "cpu" else 50
        self._first_nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.device)

    # Validation and test ----------------------------------------------------------------

    def on_validation_start(self) -> None:
        self._raise_if_nonfinite()
        trainer = compat.attached_trainer(self)
        if trainer is not None and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._raise_if_weights_nonfinite()

    def _raise_if_weights_nonfinite(self) -> None:
        """Before a validation, so before the checkpoints it leads to: none holds inf or NaN."""
        for name, tensor in self.model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise DivergedError(
                    f"training diverged: model.{name} holds inf or NaN at step {self.global_step};"
                    " no checkpoint was written from it (lower optimizer.lr, or clip with"
                    " trainer.gradient_clip_val)"
                )

    def on_validation_epoch_end(self) -> None:
        """A validation -ELBO far above where training started is a diverged run: stop before its
        checkpoints are written (ModelCheckpoint and LastCheckpoint save after this hook)."""
        trainer = compat.attached_trainer(self)
        if trainer is None or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        value = self.trainer.callback_metrics.get("val/neg_elbo")
        if value is None or self.initial_loss is None:
            return
        coin = math.prod(self.model.image_shape) * math.log(2)  # nats: every pixel a fair coin
        limit = DIVERGENCE_FACTOR * max(self.initial_loss, coin)
        if not (float(value) <= limit):  # NaN included
            raise DivergedError(
                f"training diverged: val/neg_elbo={float(value):.4g} nats at step {self.global_step},"
                f" more than {DIVERGENCE_FACTOR:g} x the {max(self.initial_loss, coin):.1f} nats it started"
                " from; no checkpoint was written from it (lower optimizer.lr, or clip with"
                " trainer.gradient_clip_val)"
            )

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation_noise()

    def on_test_epoch_start(self) -> None:
        self._start_evaluation_noise()

    def _start_evaluation_noise(self) -> None:
        # Its own generator: evaluation neither reads nor moves the random stream training draws from.
        self._evaluation_generator = torch.Generator(self.device).manual_seed(self.evaluation_seed)

    def _evaluation_step(self, x: Tensor, stage: str) -> None:
        # Means over the whole split, weighted by batch size, across processes when distributed.
        log = {"batch_size": x.shape[0], "sync_dist": True}
        terms = self.model.evaluation_terms(x, self.tau, generator=self._evaluation_generator)
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value.mean(), **log)

    def validation_step(self, x: Tensor, batch_idx: int) -> None:
        self._evaluation_step(x, "val")

    def test_step(self, x: Tensor, batch_idx: int) -> None:
        self._evaluation_step(x, "test")

    def on_train_epoch_start(self) -> None:
        # The data order and binarization are seeded by the epoch the loader is told. Lightning
        # tells it its count of processed epochs, which a run bounded by steps (max_epochs=-1)
        # resumed at an epoch's end counts one too high (it goes through the ended epoch again):
        # the training's own epoch number keeps the resumed epochs' batches those of an
        # uninterrupted run (tests/test_resume.py).
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)

    # Checkpoints ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
        # Every random stream training draws from that the checkpoint does not otherwise fix (the
        # data order and binarization are seeded per epoch; evaluation has its own generator).
        checkpoint[RANDOM_STATE_KEY] = random_state()
        checkpoint[INITIAL_LOSS_KEY] = self.initial_loss

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade_checkpoint(checkpoint)  # one written by an earlier version of this project
        self.weights_step = checkpoint["global_step"]
        self._resumed_random_state = checkpoint.get(RANDOM_STATE_KEY)
        self.initial_loss = checkpoint.get(INITIAL_LOSS_KEY, self.initial_loss)
        compat.count_automatic_steps_as_manual(checkpoint)
        trainer = compat.attached_trainer(self)
        if trainer is not None and isinstance(trainer.checkpoint_callback, ModelCheckpoint):
            compat.forget_best_checkpoints_elsewhere(checkpoint, trainer.checkpoint_callback.dirpath)


RANDOM_STATE_KEY = "random_state"
INITIAL_LOSS_KEY = "initial_loss"


def random_state() -> dict[str, Any]:
    """The global random states of torch (CPU and every CUDA device) and Python, as plain data
    that torch.load(weights_only=True) reads back."""
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(state), gauss],
    }


def set_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["torch.cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch.cuda"])
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))


def compile_optimizer_step(optimizer: torch.optim.Optimizer, **options: Any) -> torch.optim.Optimizer:
    """Make optimizer.step(closure) run the closure eagerly, then the update compiled.

    Eager, the update is a series of kernels per parameter tensor, called from Python (about 10
    for the for-loop Adam, one for the fused Adam); compiled, it is generated code over all
    parameters with no Python in between (PyTorch's "compiling the optimizer" recipe). The
    closure (forward, backward, Lightning's hooks) stays outside this graph: the forward has its
    own (VAETraining.compile_training). The learning rate is a constant of the graph: a scheduler
    that changes it would recompile.
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
