"""Helpers the baselines share: feature lookup and a per-stream ring of recent inputs."""

from __future__ import annotations

import numpy as np
import torch

from learner.features import feature_names

DEFAULT_NAMES = feature_names()


def col(names: list[str] | None, name: str) -> int:
    return (names or DEFAULT_NAMES).index(name)


def r2_norm(x: torch.Tensor, names: list[str] | None) -> torch.Tensor:
    """Squared 1h return in volatility units, recovered from the log feature (not clipped at +-8 sigma)."""
    return (torch.exp(x[..., col(names, "lrv_1h")]) - 1e-3).clamp(min=0.0)


class Ring:
    """Last ``size`` bars of per-stream arrays, addressed by absolute bar index."""

    def __init__(self, B: int, size: int, shape: tuple[int, ...], dtype=torch.float32):
        self.size = size
        self.buf = torch.zeros(B, size, *shape, dtype=dtype)

    def put(self, t0: int, v: torch.Tensor) -> None:
        idx = torch.arange(t0, t0 + v.shape[1]) % self.size
        self.buf[:, idx] = v

    def get(self, t0: int, t1: int) -> torch.Tensor:
        return self.buf[:, torch.arange(t0, t1) % self.size]


def np_state(d: dict) -> dict:
    """Checkpoint-safe copy: numpy arrays become tensors (torch.load(weights_only=True) reads them)."""
    return {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in d.items()}
