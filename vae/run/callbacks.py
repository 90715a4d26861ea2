"""Non-essential training extras, each a Lightning callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import save_image

from vae.pictures import prior_sample_grid, reconstruction_grid, to_uint8
from vae.training import VAETraining


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (epoch, batch, loss and tau) plus the global step; with refresh_rate=0 (no
    bar, as in a sweep's parallel jobs, whose console goes to a file), one line per validation."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return {"step": trainer.global_step, **metrics}

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.is_disabled or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        shown = {
            k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/neg_elbo", "train/"))
        }
        numbers = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(shown.items()))
        print(f"epoch {trainer.current_epoch} step {trainer.global_step}: {numbers}", flush=True)


class ImageGrids(L.Callback):
    """After each validation: test digits above their reconstructions, and prior samples.

    Pixels shown are the Bernoulli means p(x=1|z), decoded from the codes the latent says
    (vae.pictures.reconstruction_grid). Grids go to every W&B logger and, as PNGs, to
    `<output_dir>/images/`.
    """

    def __init__(self, output_dir: str, num_digits: int = 32, num_samples: int = 64) -> None:
        self.output_dir = Path(output_dir)
        self.num_digits, self.num_samples = num_digits, num_samples

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: VAETraining) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or datamodule.test_images is None:
            return
        x = datamodule.test_images[: self.num_digits]  # (D, C, H, W)
        # The same noise every epoch, from a generator of its own: pictures compare across epochs,
        # and drawing them leaves the training's random stream alone.
        generator = torch.Generator(x.device).manual_seed(0)
        model = pl_module.model
        grids = {
            "reconstructions": reconstruction_grid(model, x, pl_module.tau, generator=generator),
            "prior_samples": prior_sample_grid(model, self.num_samples, generator=generator),
        }
        image_dir = self.output_dir / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        for name, grid in grids.items():
            # One file per validation: a run that validates several times an epoch keeps them all.
            save_image(
                grid, image_dir / f"{name}-epoch{trainer.current_epoch:03d}-step{trainer.global_step}.png"
            )
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key=f"images/{name}",
                        # uint8 (H, W, 3): W&B's own conversion of float tensors gives black images.
                        images=[to_uint8(grid).numpy()],
                        caption=[f"epoch {trainer.current_epoch}"],
                        step=trainer.global_step,
                    )


class GradientVariance(L.Callback):
    """The variance of the training gradient with respect to the encoder's parameters, logged
    along training (as the ARM and DisARM papers plot it), for any latent and estimator.

    Every `every_n_steps` steps: `num_draws` gradients of the training loss on one fixed batch
    (the first `batch_size` validation images) at the current weights and tau, each with its own
    noise; logged as train/encoder_grad_variance (the per-parameter variance over draws,
    averaged over the encoder's parameters) and train/encoder_grad_norm2 (the squared norm of
    their mean), at that step. The draws come from a fork of the random stream (training's stream
    is untouched, so a run is the same with or without this callback) and with the model in eval
    mode (an estimator's running averages do not move). Costs num_draws forward and backward
    passes on batch_size images every every_n_steps steps.
    """

    def __init__(self, every_n_steps: int = 500, num_draws: int = 10, batch_size: int = 100) -> None:
        from vae.errors import require_int_at_least, require_positive_int

        require_positive_int("every_n_steps", every_n_steps)
        require_int_at_least("num_draws", num_draws, 2)
        require_positive_int("batch_size", batch_size)
        self.every_n_steps, self.num_draws, self.batch_size = every_n_steps, num_draws, batch_size

    def measure(self, pl_module: VAETraining, x: torch.Tensor, step: int) -> dict[str, float]:
        model = pl_module.model
        params = [p for p in model.encoder.parameters() if p.requires_grad]
        tau = pl_module.tau_at(step)
        was_training = model.training
        model.eval()
        devices = [x.device] if x.device.type == "cuda" else []
        grads = []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(step)
            for _ in range(self.num_draws):
                loss = model.training_terms(x, tau)["loss"].mean()
                grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        model.train(was_training)
        stacked = torch.stack(grads)  # (num_draws, encoder parameters)
        return {
            "train/encoder_grad_variance": stacked.var(0).mean().item(),
            "train/encoder_grad_norm2": stacked.mean(0).pow(2).sum().item(),
        }

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: VAETraining, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or trainer.datamodule is None:
            return
        x = trainer.datamodule.val_images[: self.batch_size].to(pl_module.device)
        numbers = self.measure(pl_module, x, step)
        for logger in trainer.loggers:
            logger.log_metrics(numbers, step=step)


class TrainingSetELBO(L.Callback):
    """The -ELBO of the training images after every validation, logged as train_set/neg_elbo
    (nats per image): the number the RELAX paper reports ("the highest training ELBO", with a fixed
    binarization of MNIST: data.binarization=fixed). The images are the data module's fixed
    training set (BinarizedImages.fixed_train_images: with dynamic binarization, the one draw a
    fixed binarization would train on); the -ELBO is validation's (VAE.evaluation_terms: one exact
    z per image, float32), its z drawn from a generator seeded with the run's seed afresh each time.
    Costs one forward pass over the training images (55k for MNIST) per validation.
    """

    def __init__(self, batch_size: int = 1000) -> None:
        from vae.errors import require_positive_int

        require_positive_int("batch_size", batch_size)
        self.batch_size = batch_size
        self._images: torch.Tensor | None = None

    def neg_elbo(self, pl_module: VAETraining, images: torch.Tensor) -> float:
        """The mean -ELBO of images (N, C, H, W) at the current weights and tau."""
        generator = torch.Generator(pl_module.device).manual_seed(pl_module.evaluation_seed)
        total = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        for x in images.split(self.batch_size):
            terms = pl_module.model.evaluation_terms(x.to(pl_module.device), pl_module.tau, generator)
            total += terms["neg_elbo"].double().sum()
        return total.item() / len(images)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: VAETraining) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.datamodule is None:
            return
        if self._images is None:
            self._images = trainer.datamodule.fixed_train_images()
        pl_module.log("train_set/neg_elbo", self.neg_elbo(pl_module, self._images))
