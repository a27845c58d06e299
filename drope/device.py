"""Which torch device a process computes on: one rule for training, evaluation and simulation."""
from __future__ import annotations

import os

import torch


def resolve_device(spec: str = "auto", key: str = "device") -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU; ``cuda``: this process's
    GPU (``cuda:$LOCAL_RANK``, so every rank of a torchrun job takes its own); ``cuda:N``, ``cpu``:
    as written. A GPU that is not there is a ``ValueError`` naming ``key``, not a crash mid-run."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"{key}={spec!r}: not a torch device ({e}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(f"{key}={spec!r}: only auto, cpu, cuda and cuda:N are supported")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"{key}={spec!r}: no CUDA device is available (torch {torch.__version__}, {build})")
    index = dev.index if dev.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise ValueError(f"{key}={spec!r}: GPU {index} requested, {torch.cuda.device_count()} visible")
    return torch.device("cuda", index)
