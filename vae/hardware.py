"""One line naming the machine a number was measured on, for metrics.json and the benchmark."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(cuda: bool) -> str:
    """ "NVIDIA H200" or "CPU, 2 threads (Intel(R) Xeon(R) Processor)"."""
    if cuda and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores ({cpu_name()})"
