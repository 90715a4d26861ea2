"""The NVML check Lightning turns on: dropped only where NVML cannot be loaded, and then torch's
answer to "is CUDA available?" is the same without it."""

import ctypes
import os

import pytest
import torch

from vae.run.hardware import NVML_CHECK, drop_unusable_nvml_check


def _cdll_that_fails(name, *args, **kwargs):
    raise OSError(f"{name}: cannot open shared object file")


def test_dropped_where_nvml_cannot_be_loaded_and_cuda_availability_unchanged(monkeypatch):
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(ctypes, "CDLL", _cdll_that_fails)
    available_before = torch.cuda.is_available()
    assert drop_unusable_nvml_check() is True
    assert NVML_CHECK not in os.environ
    assert torch.cuda.is_available() == available_before


@pytest.mark.parametrize("value", [None, "0"])
def test_left_alone_when_not_set_to_1(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(NVML_CHECK, raising=False)
    else:
        monkeypatch.setenv(NVML_CHECK, value)
    monkeypatch.setattr(ctypes, "CDLL", _cdll_that_fails)
    assert drop_unusable_nvml_check() is False
    assert os.environ.get(NVML_CHECK) == value


def test_kept_where_nvml_loads(monkeypatch):
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(ctypes, "CDLL", lambda name, *args, **kwargs: object())
    assert drop_unusable_nvml_check() is False
    assert os.environ[NVML_CHECK] == "1"
