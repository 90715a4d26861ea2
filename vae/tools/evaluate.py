"""python -m vae.evaluate ckpt_path=PATH [k=1000] [seed=0] [data.root=DIR]: the numbers a paper reports.

On the test set of the data the checkpoint was trained on, binarized as in training (the data's
config is in the checkpoint): -ELBO, the importance-weighted bound with k samples, the exact NLL
for latents small enough to enumerate, and latent health (vae/evaluation.py). Writes
<checkpoint>.eval-k<k>.json beside the checkpoint (one file per checkpoint and k, so a quick k = 10
check never replaces a k = 1000 evaluation) and prints a table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from vae.config import CONFIG_DIR
from vae.data import TensorBatches
from vae.evaluation import exact_nll, latent_health, test_set_bounds
from vae.tools.common import load_model_and_test_set, require_positive_ints, run_or_exit


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Compute the test-set numbers of cfg.ckpt_path; write and return them."""
    require_positive_ints(cfg, ("k", "chunk_size", "batch_size"))
    model, images = load_model_and_test_set(cfg)  # test images binarized once, fixed seed
    results: dict[str, Any] = test_set_bounds(
        model, images, cfg.k, cfg.seed, cfg.batch_size, cfg.chunk_size, progress=True
    )
    batches = TensorBatches(images, cfg.batch_size)
    if model.latent.can_enumerate:
        results["test/nll_exact"] = exact_nll(model, batches).mean().item()
    results.update(latent_health(model, batches))
    results.update(
        k=cfg.k,
        seed=cfg.seed,
        num_images=len(images),
        checkpoint=str(Path(cfg.ckpt_path).resolve()),
        global_step=model.step,
        tau=model.tau,
    )
    output = Path(cfg.output) if cfg.output else evaluation_path(cfg.ckpt_path, cfg.k)
    partial = output.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, output)  # never leave a half-written file
    _print_table(results, output)
    return results


def evaluation_path(ckpt_path: str | Path, k: int) -> Path:
    """Where vae.evaluate writes the numbers of a checkpoint at k: <name>.eval-k<k>.json beside it."""
    ckpt = Path(ckpt_path).resolve()
    return ckpt.with_name(f"{ckpt.stem}.eval-k{k}.json")


def _print_table(results: dict[str, Any], output: Path) -> None:
    print(f"\n{'metric':<28} {'value':>10}   (test/*: nats per image)")
    for name, value in results.items():
        if isinstance(value, float) and name.startswith("test/"):
            print(f"{name:<28} {value:10.3f}")
    for name, value in results.items():
        if name.startswith("latent/") and not isinstance(value, list):
            print(f"{name:<28} {value:10.3f}" if isinstance(value, float) else f"{name:<28} {value:>10}")
    print(f"k={results['k']}, seed={results['seed']}, {results['num_images']} test images")
    print(f"Wrote {output}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_or_exit(evaluate, cfg)


if __name__ == "__main__":
    main()
