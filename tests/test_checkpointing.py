"""Checkpoints are written whole or not at all, in their own folder (vae/run/checkpointing.py)."""

import os

import pytest
import torch

from vae.run.checkpointing import atomic_torch_save, remove_temporary_files


class _FailsWhilePickled:
    """An object whose pickling fails part-way, as a full disk or a kill interrupts a save."""

    def __reduce__(self):
        raise OSError(28, "No space left on device")


def test_a_save_that_fails_part_way_leaves_the_previous_file_and_no_temporary_one(tmp_path, monkeypatch):
    other_filesystem = tmp_path / "tmpdir"  # where $TMPDIR points: never written
    other_filesystem.mkdir()
    monkeypatch.setenv("TMPDIR", str(other_filesystem))
    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save({"step": 1, "weights": torch.arange(1000.0)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save({"step": 2, "weights": torch.arange(1000.0), "bad": _FailsWhilePickled()}, path)
    assert path.read_bytes() == before and torch.load(path, weights_only=True)["step"] == 1
    assert sorted(os.listdir(path.parent)) == ["last.ckpt"] and not os.listdir(other_filesystem)
    atomic_torch_save({"step": 3}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def test_temporary_files_of_killed_saves_are_found_and_removed(tmp_path):
    (tmp_path / ".last.ckpt.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    assert [p.name for p in remove_temporary_files(tmp_path)] == [".last.ckpt.abc123.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_every_checkpoint_of_a_run_goes_through_the_atomic_writer(make_config):
    import vae.run
    from vae.run.checkpointing import AtomicCheckpointIO, LastCheckpoint

    run = vae.run.prepare(make_config(["logger=none"]))
    assert isinstance(run.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert any(isinstance(c, LastCheckpoint) for c in run.trainer.checkpoint_callbacks)
