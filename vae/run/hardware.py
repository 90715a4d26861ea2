"""The machine: one line naming it (for metrics.json and the benchmark), and a fix for a check
that costs every optimizer step on machines without NVIDIA's driver."""

from __future__ import annotations

import ctypes
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
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'' if threads == 1 else 's'} of {os.cpu_count()} cores ({cpu_name()})"


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_unusable_nvml_check() -> bool:
    """Unset PYTORCH_NVML_BASED_CUDA_CHECK where NVML cannot be loaded; True if it was unset.

    Lightning sets the variable on import so that torch.cuda.is_available() asks NVML instead of
    initializing CUDA, which would make fork unsafe. Where NVML's library is missing (a CUDA build
    of torch on a machine without NVIDIA's driver, such as a CPU-only server or laptop), torch tries
    to load it again on every call and then falls back to the CUDA runtime's own check, as if the
    variable were unset. torch.optim calls is_available() in every step(): ~50 us a step here, 2-4%
    of a CPU epoch, for nothing. torch loads the library by this same name.
    """
    if os.environ.get(NVML_CHECK) != "1" or not torch.backends.cuda.is_built():
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CHECK]
        return True
    return False
