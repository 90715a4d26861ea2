"""What a sweep says when all its jobs have returned (a Hydra callback, configs/hydra/default.yaml).

A job that fails writes failed.json and lets the other jobs run (train.py); this callback then
lists the failed jobs and ends the sweep with exit status 1, so that a script or a cluster sees
the failure. Jobs that wait for a choice on validation (vae/run/selection.py) are counted, with what
to do: run the same command again. Jobs that another process still runs (the same command started
twice on one sweep directory shares out its jobs) are counted too: this sweep has not finished them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vae.run.lock import held_by_a_process
from vae.run.selection import STATUS_FILE


class ReportFailedJobs(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        waiting = [
            p for p in sweep_dir.glob(f"*/{STATUS_FILE}") if json.loads(p.read_text()).get("action") == "wait"
        ]
        # This sweep's own jobs have all returned: a lock held now is another process's.
        jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name))
        elsewhere = [p.name for p in jobs if held_by_a_process(p)]
        ours = [p for p in jobs if p.name not in elsewhere]
        failed = [p / "failed.json" for p in ours if (p / "failed.json").is_file()]
        if elsewhere:
            print(
                f"{len(elsewhere)} job(s) run in another process ({', '.join(elsewhere)}): vae.report"
                " lists them as running until they end",
                file=sys.stderr,
            )
        if waiting:
            print(
                f"{len(waiting)} job(s) wait for a choice on validation: run the same command again",
                file=sys.stderr,
            )
        if failed:
            for path in failed:
                record = json.loads(path.read_text())
                print(
                    f"error: job {path.parent.name} failed: {record['error']}: {record['message']}",
                    file=sys.stderr,
                )
            print(f"error: {len(failed)} job(s) of the sweep in {sweep_dir} failed", file=sys.stderr)
            sys.exit(1)
