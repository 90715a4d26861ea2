"""A callback for the kill-and-resume test: it reports each step and stops at one so the test can
kill the process there (tests/test_resume.py)."""

import time
from pathlib import Path

import lightning as L


class PauseAtStep(L.Callback):
    """After every training step, write the global step to `path`; at `step`, wait for the kill."""

    def __init__(self, path: str, step: int, seed: int | None = None) -> None:
        """seed: pause only the run of this seed (one job of a sweep)."""
        self.path, self.step, self.seed = Path(path), step, seed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.seed is not None and pl_module.evaluation_seed != self.seed:
            return
        self.path.write_text(str(trainer.global_step))
        if trainer.global_step == self.step:
            time.sleep(600)


class FullDiskAtStep(L.Callback):
    """At `step`, fail as a checkpoint write on a full disk does (OSError ENOSPC with the file)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise OSError(28, "No space left on device", f"{trainer.default_root_dir}/checkpoints/last.ckpt")
