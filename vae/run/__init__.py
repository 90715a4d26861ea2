"""The run layer: everything between a composed config and a finished run directory.

build.py       every object a run needs, each config value checked before any work (checks.py)
fit.py         prepare (build, nothing written), fit_and_test (train, test, metrics.json), train
job.py         what train.py runs: one run or one sweep job, failures in one line
sweep.py       a sweep job's share of the machine, and its continuation when the sweep reruns
selection.py   choosing hyperparameters on validation numbers, rung by rung (successive halving)
resume.py      resuming a run; cadence.py: how often it validates
directory.py   who may write a run directory (lock.py) and the records written there
checkpointing.py, callbacks.py, loggers.py, console.py, hardware.py: Lightning and W&B plumbing
"""

from vae.run.build import build_checked
from vae.run.fit import Run, fit_and_test, prepare, train

__all__ = ["Run", "build_checked", "fit_and_test", "prepare", "train"]
