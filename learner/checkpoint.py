"""Whole-state checkpoints: atomic writes, ``torch.load(weights_only=True)``, a position to resume from.

A checkpoint file is a dict of tensors, numbers, strings, lists and dicts only (so the safe loader
reads it): the model's complete ``state_dict()`` (slow weights, every fast weight and momentum, each
CMS level's accumulator, optimizer memory and phase, convolution caches, the input ring), torch's
RNG state, and the caller's position (bar index, consumed bus offsets).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from continuum.errors import UserError


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def safe_load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and why
        raise UserError(f"checkpoint {path} cannot be read safely ({type(e).__name__}: {e})") from None


def save_state(path: str | Path, model, position: dict | None = None) -> None:
    """Checkpoint an online model mid-stream."""
    atomic_save(
        {
            "kind": "continuum.state/1",
            "model": model.name,
            "state": model.state_dict(),
            "rng": torch.get_rng_state(),
            "position": dict(position or {}),
        },
        path,
    )


def load_state(path: str | Path, model) -> dict:
    """Restore ``model`` in place; returns the saved position."""
    ck = safe_load(path)
    if ck.get("kind") != "continuum.state/1":
        raise UserError(f"{path} is not a Continuum state checkpoint")
    model.load_state_dict(ck["state"])
    torch.set_rng_state(ck["rng"])
    return ck["position"]


def save_pretrained(path: str | Path, net, meta: dict) -> None:
    atomic_save(
        {
            "kind": "continuum.pretrained/1",
            "config": net.cfg.to_dict(),
            "slow": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "meta_checksum": net.meta_checksum(),
            "meta": meta,
        },
        path,
    )


def load_pretrained(path: str | Path):
    """(HopeNet, meta) from a `continuum pretrain` checkpoint."""
    from learner.hope.config import HopeConfig
    from learner.hope.model import HopeNet

    ck = safe_load(path)
    if ck.get("kind") != "continuum.pretrained/1":
        raise UserError(f"{path} is not a `continuum pretrain` checkpoint")
    net = HopeNet(HopeConfig.from_dict(ck["config"]))
    net.load_state_dict(ck["slow"])
    net.eval()
    return net, ck["meta"]
