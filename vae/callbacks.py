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
            save_image(grid, image_dir / f"{name}-epoch={trainer.current_epoch:03d}.png")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key=f"images/{name}",
                        # uint8 (H, W, 3): W&B's own conversion of float tensors gives black images.
                        images=[to_uint8(grid).numpy()],
                        caption=[f"epoch {trainer.current_epoch}"],
                        step=trainer.global_step,
                    )
