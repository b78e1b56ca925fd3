"""Optimizers as associative memories of gradients, in the functional form the CMS levels use.

A level hands its accumulated gradient ``g`` (B, ...) and its optimizer memory ``state`` (a dict of
tensors saved in the whole-state checkpoint) to ``LEVEL_OPTIMIZERS[name]`` and gets back the step
direction (before the level's learning rate and clipping) and the new memory.

- ``sgd``: the step is the gradient sum itself (eq. 71 as written).
- ``momentum``: m <- beta m + g; the dot-product memory of gradients (NL eqs. 32-37).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

State = dict[str, torch.Tensor]
LevelOptimizer = Callable[[str, torch.Tensor, State], tuple[torch.Tensor, State]]


def sgd(name: str, g: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    return g, state


def momentum(name: str, g: torch.Tensor, state: State, beta: float = 0.9) -> tuple[torch.Tensor, State]:
    m = state.get(f"{name}.m")
    m = g.clone() if m is None else beta * m + g
    return m, {**state, f"{name}.m": m}


LEVEL_OPTIMIZERS: dict[str, LevelOptimizer] = {"sgd": sgd, "momentum": momentum}
