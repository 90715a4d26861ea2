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


class _SleepsWhilePickled:
    """A checkpoint entry whose pickling announces itself in `marker` and then waits for the kill:
    the checkpoint's file is open and unfinished."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        Path(self.marker).write_text("saving")
        time.sleep(600)
        return (int, ())


class KillableSaveAtStep(L.Callback):
    """The checkpoints saved at `step` hang part-way through their write (see _SleepsWhilePickled)."""

    def __init__(self, marker: str, step: int) -> None:
        self.marker, self.step = marker, step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.global_step == self.step:
            checkpoint["hangs"] = _SleepsWhilePickled(self.marker)
