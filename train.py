"""Train a VAE: compose the config with Hydra, then run it (vae/run/: check and build everything,
fit, test, write metrics.json into the run directory).

python train.py model=categorical
python train.py model=gaussian trainer.max_epochs=3
python train.py model=categorical model.estimator=st_gumbel tau=cosine seed=3
python train.py <same overrides> ckpt_path=runs/.../checkpoints/last.ckpt   # resume, in that run's directory
python train.py -m experiment=jang2017_table1                               # a sweep (Hydra multirun)

From Python, with a composed config: vae.run.train(vae.config.compose_train_config(overrides, dir)).
"""

import sys

import hydra
from omegaconf import DictConfig

from vae.run.checks import refuse_numbers_for_groups
from vae.run.job import run_job


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    refuse_numbers_for_groups(sys.argv[1:])  # before Hydra, whose message would not name the group
    main()
