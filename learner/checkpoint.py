"""Whole-state checkpoints: atomic writes, ``torch.load(weights_only=True)``, a position to resume from.

A checkpoint file is a dict of tensors, numbers, strings, lists and dicts only (so the safe loader
reads it): the model's complete ``state_dict()`` (slow weights, every fast weight and momentum, each
CMS level's accumulator, optimizer memory and phase, convolution caches, the input ring), torch's
RNG state, and the caller's position (bar index, consumed bus offsets).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from continuum.atomic import replace_atomically
from continuum.errors import UserError

_ZIP = b"PK\x03\x04"  # torch.save writes a zip archive


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the target."""
    with replace_atomically(path) as tmp:
        torch.save(obj, tmp)


def _reason(e: BaseException, limit: int = 120) -> str:
    """One line of an exception's text, without torch's advice to load unsafely."""
    if isinstance(e, KeyError) and e.args:
        return f"no entry {e.args[0]!r}"
    text = " ".join(str(e).split())
    if not text or "weights_only" in text:
        return type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_load(path: str | Path) -> dict:
    """The dict a Continuum checkpoint holds, read with ``torch.load(weights_only=True)``.

    Every way a file can fail to be one (missing, empty, truncated, another format, objects a safe load
    refuses) is one UserError naming the file; it never suggests loading the file unsafely.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise UserError(f"checkpoint {path} cannot be read ({e.strerror or _reason(e)})") from None
    if not head:
        raise UserError(f"{path}: empty file, not a Continuum checkpoint")
    zipped = head == _ZIP  # what torch.save writes
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError/RuntimeError/OSError/EOFError, by cause
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if refused:  # a pickled object: the safe loader refuses to run its code
            raise UserError(
                f"{path}: not a Continuum checkpoint, or one written by another version (it holds a "
                f"{refused.group(1)} object; Continuum checkpoints hold only tensors, numbers and strings)"
            ) from None
        if zipped:
            raise UserError(
                f"{path}: truncated or corrupt checkpoint file (its archive is incomplete or damaged); "
                "copy or write it again"
            ) from None
        raise UserError(f"{path}: not a Continuum checkpoint (not a torch checkpoint file)") from None
    if not isinstance(ck, dict) or not str(ck.get("kind", "")).startswith("continuum."):
        raise UserError(f"{path}: not a Continuum checkpoint (a torch file without Continuum's 'kind' entry)")
    return ck


def _expect(ck: dict, path: Path | str, kind: str, what: str) -> None:
    """The checkpoint is of ``kind`` ("continuum.state/1"), or a UserError saying what it is instead."""
    got = str(ck["kind"])
    if got == kind:
        return
    if got.split("/")[0] == kind.split("/")[0]:
        raise UserError(
            f"{path}: {what} written by another version of Continuum (format {got}; this version reads {kind})"
        )
    names = {"continuum.state": "a `continuum learn` model state", "continuum.pretrained": "a `continuum pretrain`"}
    other = names.get(got.split("/")[0], f"a {got}")
    raise UserError(f"{path} is {other} checkpoint, not {what}")


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
    _expect(ck, path, "continuum.state/1", "a model state checkpoint")
    try:
        model.load_state_dict(ck["state"])
        torch.set_rng_state(ck["rng"])
        return dict(ck["position"])
    except UserError:
        raise
    except Exception as e:  # missing entries, other shapes, an older layout of a model's state
        raise UserError(
            f"{path}: written by another version of Continuum; its {model.name} state does not fit this one "
            f"({_reason(e)})"
        ) from None


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
    _expect(ck, path, "continuum.pretrained/1", "a `continuum pretrain` checkpoint")
    try:
        net = HopeNet(HopeConfig.from_dict(ck["config"]))
        net.load_state_dict(ck["slow"])
        meta = ck["meta"]
    except Exception as e:  # another config schema, other weight names or shapes
        raise UserError(
            f"{path}: written by another version of Continuum; its Hope config or weights do not fit this one "
            f"({_reason(e)})"
        ) from None
    net.eval()
    return net, meta
