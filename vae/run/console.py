"""What a run prints: nothing a user cannot act on, and in a parallel sweep, one line per job.

Some messages come from the libraries and ask nothing of the user: Lightning's advertisement for
its cloud logger, a deprecation that Lightning's own code triggers in torch
(torch.utils._pytree.LeafSpec), and, on a resume into another directory, Lightning's note that
it keeps the previous directory's best checkpoint (which VAETraining makes it forget). They are
dropped by their exact text; every other warning and message goes through.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LIGHTNING_TIP = "💡 Tip:"
LIGHTNING_PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LIGHTNING_DIRPATH_CHANGED = r"The dirpath has changed from .* Only `best_model_path` will be reloaded"


class _DropLightningTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP)


def quiet_library_noise() -> None:
    """Drop the two messages above (idempotent)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningTip) for f in logger.filters):
        logger.addFilter(_DropLightningTip())
    warnings.filterwarnings("ignore", message=LIGHTNING_PYTREE_DEPRECATION)
    warnings.filterwarnings("ignore", message=LIGHTNING_DIRPATH_CHANGED)


@contextmanager
def console_in(path: Path) -> Iterator[Callable[[str], None]]:
    """Send this process's console (file descriptors 1 and 2: Python, C code and child processes
    alike) to `path` for the block; yields a function that writes a line to the console as it was.

    What a sweep's parallel jobs use, so that their progress does not interleave on one screen.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)

        def say(line: str) -> None:
            os.write(saved_err, (line + "\n").encode())

        try:
            yield say
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
