"""One process per run directory: a lock held while a run writes there.

Two runs started on one directory (the same hydra.run.dir, the same resume twice, two sweeps on
one sweep directory) would interleave their checkpoints, logs and metrics.json. The first takes
an exclusive lock on `<run dir>/.lock` (fcntl.flock: released by the kernel when the process
ends, however it ends, so a killed run never leaves a stale lock); the second is refused at once
with one line and writes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vae.errors import RunDirectoryBusy

LOCK_FILE = ".lock"


@contextlib.contextmanager
def hold_run_directory(output_dir: Path) -> Iterator[None]:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise RunDirectoryBusy(
                f"paths.output_dir={str(output_dir)!r} is in use by a run in process {holder};"
                " wait for it to end, or choose another directory (hydra.run.dir=...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
