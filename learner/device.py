"""Device choice: CPU here, CUDA when present. No tensor in the learner assumes the CPU."""

from __future__ import annotations

import torch

from continuum.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: use cpu, cuda or auto")
    return torch.device(name)
