"""Non-essential training extras, each a Lightning callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from vae.module import VAE


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (epoch, batch, loss and tau) plus the global step."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return {"step": trainer.global_step, **metrics}


class ImageGrids(L.Callback):
    """After each validation: test digits beside their reconstructions, and prior samples.

    Pixels shown are the Bernoulli means p(x=1|z). The categorical model reconstructs from a
    one-hot z ~ q(z|x), the model that is evaluated. Grids go to every W&B logger and, as
    PNGs, to `<output_dir>/images/`.
    """

    def __init__(self, output_dir: str, num_digits: int = 32, num_samples: int = 64) -> None:
        self.output_dir = Path(output_dir)
        self.num_digits, self.num_samples = num_digits, num_samples

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: VAE) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or datamodule.test_images is None:
            return
        x = datamodule.test_images[: self.num_digits]  # (D, 1, 28, 28)
        with torch.no_grad():
            reconstruction = pl_module.decode(pl_module.encode(x).sample()).mean  # (D, 1, 28, 28)
            z = pl_module.prior().sample((self.num_samples,))
            samples = pl_module.decode(z).mean  # (S, 1, 28, 28)
        # Each test digit followed by its reconstruction, 8 pairs per row.
        pairs = torch.stack([x.view(-1, 8, 1, 28, 28), reconstruction.view(-1, 8, 1, 28, 28)], 1)
        grids = {
            "reconstructions": make_grid(pairs.transpose(1, 2).reshape(-1, 1, 28, 28), nrow=16),
            "prior_samples": make_grid(samples, nrow=8),
        }
        image_dir = self.output_dir / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        for name, grid in grids.items():
            save_image(grid, image_dir / f"{name}-epoch={trainer.current_epoch:03d}.png")
            # (H, W, 3) uint8: W&B's own conversion of float tensors gives black images.
            pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key=f"images/{name}",
                        images=[pixels.numpy()],
                        caption=[f"epoch {trainer.current_epoch}"],
                        step=trainer.global_step,
                    )
