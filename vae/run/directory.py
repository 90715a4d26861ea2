"""The run directory: which run may write it, and the records a run leaves there besides its
checkpoints and metrics.json (.hydra/, failed.json)."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae.config import resumed_run_dir
from vae.errors import ConfigError
from vae.run.lock import hold_run_directory


def refuse_to_overwrite(output_dir: Path, ckpt_path: str | None) -> None:
    """A run never writes into a directory that holds another run's results; resuming one of the
    directory's own checkpoints continues that run there."""
    if ckpt_path is not None and resumed_run_dir(ckpt_path) == output_dir.resolve():
        return
    taken = [name for name in ("checkpoints", "metrics.json") if _holds_results(output_dir / name)]
    if taken:
        raise ConfigError(
            f"paths.output_dir={str(output_dir)!r} already holds {' and '.join(taken)} of another"
            " run; choose a new directory (hydra.run.dir=...) to keep them intact"
        )


def require_writable(key: str, directory: Path) -> None:
    """The run (or sweep) directory can be made and written: checked on its nearest existing
    folder with a nameless temporary file, so that nothing is left behind either way."""
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{key}={str(directory)!r} cannot be made: {existing} is a file, not a folder;"
            f" choose another {key}"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(
            f"{key}={str(directory)!r} is not writable ({existing}: {e.strerror or e});"
            f" choose a writable {key}"
        ) from None


class RefuseUnwritableDirectory(Callback):
    """A Hydra callback (configs/hydra/default.yaml): a run or sweep directory that cannot be
    written is one line and exit status 1, before Hydra makes the folder (its own error is a
    traceback from inside Hydra). It also notes the folders Hydra is about to make for a run, so
    that a run refused before it writes anything can remove them (remove_unused_run_directory)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        directory = self._check(config, "hydra.run.dir")
        if directory is not None:
            _FOLDERS_MADE_FOR_THE_RUN[directory] = _outermost_missing(directory)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> Path | None:
        # The folder's name reads ${hydra:...} (the model's name), which needs the HydraConfig that
        # Hydra sets only once the job starts: set it as Hydra then does, from the same config.
        HydraConfig.instance().set_config(config)
        try:
            directory = Path(str(OmegaConf.select(config, key))).absolute()
        except OmegaConfBaseException:  # a name this check cannot resolve: Hydra reports it
            return None
        # The default folders sit under paths.log_dir: a user who set only that is told about it.
        given = _override_keys(config.hydra.overrides.hydra) | _override_keys(config.hydra.overrides.task)
        named, checked = key, directory
        if key not in given and "paths.log_dir" in given:
            named, checked = "paths.log_dir", Path(str(config.paths.log_dir))
        try:
            require_writable(named, checked)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        return directory


# A run's directory (absolute) -> the outermost of the folders Hydra makes for it (the directory
# itself or one above it), noted by RefuseUnwritableDirectory before Hydra makes them.
_FOLDERS_MADE_FOR_THE_RUN: dict[Path, Path] = {}


def _outermost_missing(directory: Path) -> Path:
    outermost = directory
    while not outermost.parent.exists() and outermost.parent != outermost:
        outermost = outermost.parent
    return outermost


def _override_keys(overrides: Any) -> set[str]:
    """The keys of Hydra's override strings (`+key=value`, `key=value`, `~key`)."""
    return {str(o).lstrip("+~").split("=", 1)[0] for o in overrides}


def remove_unused_run_directory(output_dir: Path) -> None:
    """A run refused before it wrote anything leaves no folder behind: its empty run directory
    goes, and so do the empty folders above it that Hydra made for it (runs/<model>/ on a first
    run), never a folder that was there before the run."""
    folder = output_dir.absolute()
    outermost = _FOLDERS_MADE_FOR_THE_RUN.get(folder, folder)
    while folder.is_dir() and not any(folder.iterdir()) and folder.is_relative_to(outermost):
        folder.rmdir()
        folder = folder.parent


def _holds_results(path: Path) -> bool:
    """metrics.json, or a checkpoints folder with a checkpoint in it (a run killed before its
    first save leaves none)."""
    return path.is_file() or (path.is_dir() and any(path.glob("*.ckpt")))


@contextlib.contextmanager
def holding(output_dir: Path, ckpt_path: str | None) -> Iterator[None]:
    """The run directory's lock (vae/run/lock.py), taken by the first process under DDP; then the
    directory is checked again, in case another run finished there since prepare() looked."""
    if rank_zero_only.rank != 0:
        yield
        return
    with hold_run_directory(output_dir):
        refuse_to_overwrite(output_dir, ckpt_path)
        yield


def write_hydra_record(output_dir: Path, task_cfg: dict[str, Any]) -> None:
    """.hydra/ in the run directory (the composed config, Hydra's config, the overrides), written
    here rather than by Hydra (hydra.output_subdir: null) so that a directory a run is refused
    is left exactly as it was."""
    hydra_cfg = HydraConfig.get()
    folder = output_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(task_cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, folder / "overrides.yaml")


def record_failure(output_dir: Path, error: BaseException) -> None:
    """failed.json in the job's directory, so a sweep's report can show what went wrong."""
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "error": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    (output_dir / "failed.json").write_text(json.dumps(record, indent=2) + "\n")
