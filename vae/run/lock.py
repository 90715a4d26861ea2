"""One process per run directory: a lock held while a run writes there.

Two runs started on one directory (the same hydra.run.dir, the same resume twice, two sweeps on
one sweep directory) would interleave their checkpoints, logs and metrics.json. The first takes
an exclusive lock on `<run dir>/.lock` (fcntl.flock: released by the kernel when the process
ends, however it ends, so a killed run never leaves a stale lock); the second is refused with one
line and writes nothing.

Whether a directory's run is alive is read the same way (held_by_a_process): `vae.report` tells
a run still training from one that was stopped (killed, preempted) and waits for its command to be
run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from vae.errors import RunDirectoryBusy

LOCK_FILE = ".lock"
# A probe (held_by_a_process) holds the lock for microseconds; a run starting at that moment tries
# again this many times, this far apart, before it calls the directory busy.
_TRIES, _PAUSE_S = 5, 0.05


@contextlib.contextmanager
def hold_run_directory(output_dir: Path) -> Iterator[None]:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd, fcntl.LOCK_EX, tries=_TRIES):
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


def held_by_a_process(output_dir: Path) -> bool:
    """Whether a live process holds output_dir's run lock (a run writing there now)."""
    path = output_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:  # a shared lock is refused while a run holds the exclusive one; taken, it is let go at once
        return not _lock(fd, fcntl.LOCK_SH, tries=1)
    finally:
        os.close(fd)


def _lock(fd: int, kind: int, tries: int) -> bool:
    for attempt in range(tries):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(_PAUSE_S)
    return False
