"""python -m vae.sample ckpt_path=PATH [data.root=DIR]: the pictures a paper shows, from the
checkpoint alone.

Writes to <run dir>/samples/<checkpoint name>/ (printed):
- reconstructions.png: test images above their reconstructions (categorical: one-hot z, then
  the relaxed sample at the training tau; Gaussian: the posterior mean);
- prior_samples.png: decoded z ~ p(z);
- traversals.png: one row per (image, latent coordinate), the coordinate stepped through its
  values (a categorical variable's K classes; a Gaussian dimension swept over [-3, 3]);
- manifold.png: for a 2-dimensional Gaussian latent, decoded means over a grid.
and logs them to the checkpoint's W&B run when the run directory holds one.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from vae.checkpoint import run_dir_of
from vae.config import CONFIG_DIR
from vae.pictures import (
    manifold_grid,
    prior_sample_grid,
    reconstruction_grid,
    to_uint8,
    traversal_grid,
)
from vae.run.loggers import resolve_wandb_mode
from vae.tools.common import load_model_and_test_set, require_positive_ints, run_or_exit

COUNT_KEYS = (
    "num_digits",
    "num_samples",
    "traversal_digits",
    "traversal_dims",
    "traversal_steps",
    "manifold_steps",
)


def make_pictures(cfg: DictConfig) -> dict[str, Path]:
    """Write every picture for cfg.ckpt_path; returns {name: png path}."""
    require_positive_ints(cfg, COUNT_KEYS)
    model, test = load_model_and_test_set(cfg)

    generator = torch.Generator(test.device).manual_seed(cfg.seed)
    grids = {
        "reconstructions": reconstruction_grid(model, test[: cfg.num_digits], model.tau, generator=generator),
        "prior_samples": prior_sample_grid(model, cfg.num_samples, generator=generator),
        "traversals": traversal_grid(
            model,
            test[: cfg.traversal_digits],
            test[:1000],
            cfg.traversal_dims,
            cfg.traversal_steps,
        ),
    }
    manifold = manifold_grid(model, cfg.manifold_steps)
    if manifold is not None:
        grids["manifold"] = manifold

    run_dir = run_dir_of(cfg.ckpt_path)
    output_dir = Path(cfg.output_dir or run_dir / "samples" / Path(cfg.ckpt_path).stem)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, grid in grids.items():
        paths[name] = output_dir / f"{name}.png"
        save_image(grid, paths[name])
    print(f"Wrote {', '.join(p.name for p in paths.values())} to {output_dir}")
    if cfg.wandb:
        _log_to_wandb_run(run_dir, grids, model.step)
    return paths


def _log_to_wandb_run(run_dir: Path, grids: dict[str, torch.Tensor], step: int) -> None:
    """Append the pictures to the W&B run the checkpoint was trained in, if there is one.

    Offline, W&B writes them beside the original run under the same id, and `wandb sync`
    merges the two.
    """
    run_files = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"))
    if not run_files:
        return
    import wandb

    run_id = run_files[0].stem.removeprefix("run-")
    config = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else {}
    project = OmegaConf.select(config, "logger.wandb.project", default="discrete-vae")
    run = wandb.init(id=run_id, project=project, dir=str(run_dir), resume="allow", mode=resolve_wandb_mode())
    run.log(
        {f"samples/{name}": wandb.Image(to_uint8(grid).numpy()) for name, grid in grids.items()}
        | {"samples/global_step": step}
    )
    run.finish()
    print(f"Logged the pictures to W&B run {run_id}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="sample")
def main(cfg: DictConfig) -> None:
    run_or_exit(make_pictures, cfg)


if __name__ == "__main__":
    main()
