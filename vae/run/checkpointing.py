"""How a run writes its checkpoints: atomically, and `last.ckpt` always the newest state.

- AtomicCheckpointIO (a Lightning CheckpointIO plugin, used for every checkpoint a run writes):
  the checkpoint goes to a temporary file beside its final name, is flushed to disk (fsync),
  then renamed over the final name. A rename within one folder is atomic, so a kill or a full
  disk at any moment leaves either the previous file or the new one under the name, never a
  part of one. (Lightning's own save writes through a temporary file in $TMPDIR and, when that is
  on another filesystem, copies it onto the checkpoint in place: a kill during that copy
  truncated last.ckpt.) A temporary file left by a kill is named `.NAME.*.tmp` and removed by
  the next run in the folder.
- LastCheckpoint (a Lightning Checkpoint callback): `last.ckpt` written after every validation,
  at the end of every epoch and when training ends, whatever validation found.
  (ModelCheckpoint(save_last=True) rewrites it only when the monitored number improves, and a
  moved run directory made it write last-v1.ckpt, last-v2.ckpt ... instead.) It is a
  Checkpoint so that Lightning runs it after the best-checkpoint callback listed before it, at
  the same hook: last.ckpt then records the newest best.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

TEMPORARY_SUFFIX = ".tmp"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save(obj, path) through a temporary file beside it, fsync'ed, then renamed over path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except RuntimeError as e:  # torch's archive writer reports a failed write (a full disk) this way
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise OSError(errno.EIO, f"the write failed ({str(e).splitlines()[0]})", str(path)) from e
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)  # the rename itself on disk


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed saves left in `folder`; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{TEMPORARY_SUFFIX}") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint format, written atomically in the checkpoint's own folder."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(Checkpoint):
    """`<dirpath>/last.ckpt`: the newest state, after every validation while fitting, at the end of
    every epoch and at the end of training."""

    FILE_NAME = "last.ckpt"

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._saved_step: int | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILE_NAME

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        if self._saved_step == trainer.global_step:  # validation at the last step, then the end
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: resume is exact
        self._saved_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A resumed run removes what killed attempts left in its checkpoint folder: temporary
        files of interrupted saves, and best-* checkpoints that the restored best-checkpoint
        callback does not track (written after the checkpoint resumed from, by an attempt that was
        then killed, or left by a kill between saving a new best and removing the old one)."""
        remove_temporary_files(self.dirpath)
        if trainer.ckpt_path is None:
            return
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or Path(callback.dirpath or "") != self.dirpath:
                continue
            tracked = {Path(p).resolve() for p in [*callback.best_k_models, callback.best_model_path] if p}
            tracked.add(Path(trainer.ckpt_path).resolve())
            for path in self.dirpath.glob("best-*.ckpt"):
                if path.resolve() not in tracked:
                    path.unlink()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A validation at the end of an epoch is followed by the epoch's end, where ModelCheckpoint
        # saves the best when validation runs once an epoch; last.ckpt is written there, after it.
        if not trainer.is_last_batch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)
