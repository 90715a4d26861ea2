"""What a routine run prints: nothing a user cannot act on.

Some messages come from the libraries and ask nothing of the user: Lightning's advertisement for
its cloud logger, a deprecation that Lightning's own code triggers in torch
(torch.utils._pytree.LeafSpec), and, on a resume into another directory, Lightning's note that
it keeps the previous directory's best checkpoint (which VAETraining makes it forget). They are
dropped by their exact text; every other warning and message goes through.
"""

from __future__ import annotations

import logging
import warnings

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
