"""Where a torch engine runs and in which precision: one rule for every engine (Fish Speech, Qwen3-TTS).

Imported by the engines' `load` only: torch is imported inside, so a CPU worker that never loads them never
imports it."""

from __future__ import annotations

from typing import Any


def choose_device(wanted: str) -> str:
    """`wanted` (`LOCKN_*_DEVICE`): `cuda`, `cuda:1`, `cpu`…, or `auto`: the GPU when there is one."""
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_precision(device: str) -> Any:
    """The weights' and caches' dtype on `device`: bfloat16 on a GPU (the released weights' own, half the memory
    of float32), float32 on a CPU (where bfloat16 matmuls are slow on most processors)."""
    import torch

    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
