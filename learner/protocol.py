"""One protocol for every online model: Hope and each baseline run the same way everywhere.

Time is a grid of bars; B streams (assets) advance together. A model sees bars in calls of L bars:

- ``predict(x, mask) -> (B, L, 3)``: forecasts for the next bars, made *before* their targets exist.
  Input-driven state (recurrences, Hope's self-modifying memory) advances here; no labels.
- ``learn(steps, y, ymask)``: targets that have just been realised, for forecasts made at absolute
  bar indices ``steps``. Each (bar, target) arrives exactly once, never before its horizon has
  passed (the harness in ``learner.stream`` guarantees it; the tests check it).
- ``state_dict`` / ``load_state_dict``: the whole state, so a stream resumes bit-for-bit.

Forecasts are in volatility units: ``z_ret_1h = ret_1h / sigma``, ``z_ret_24h = ret_24h / (sigma sqrt 24)``,
``log_var_24h = log(var_24h / (24 sigma^2))``, with ``sigma`` the asset's causal hourly scale at the bar
the forecast is made (``learner.features``). :func:`to_raw` and :func:`to_units` are the only places
these conversions are written; targets are scaled by :func:`unit_scale`.

Example::

    >>> import torch
    >>> from learner.baselines.volatility import EWMAVol
    >>> m = EWMAVol(n_features=18, names=[]); m.reset(2)
    >>> m.predict(torch.zeros(2, 4, 18), torch.ones(2, 4, dtype=torch.bool)).shape
    torch.Size([2, 4, 3])
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

OUTPUTS = ("z_ret_1h", "z_ret_24h", "log_var_24h")
RET_CLIP = 5.0  # training targets are clipped (heavy tails); evaluation uses the raw values
RV_CLIP = 50.0
LOG_VAR_CLIP = 12.0  # |log_var_24h| beyond this is clipped when mapped back to a variance
HOURS_24 = 24  # the 24h horizons, in 1h bars


# ----------------------------------------------------------------------------- units
def unit_scale(sigma: np.ndarray) -> np.ndarray:
    """(...,) hourly scale -> (..., 3): what ret_1h, ret_24h and var_24h are divided by."""
    s = np.asarray(sigma, dtype=np.float64)[..., None]
    return np.concatenate([s, s * HOURS_24**0.5, HOURS_24 * s**2], axis=-1)


def to_raw(z: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(..., 3) forecasts in volatility units -> (..., 3) raw: ret_1h, ret_24h (log returns), var_24h."""
    s = np.asarray(sigma, dtype=np.float64)
    out = np.empty(np.shape(z), dtype=np.float64)
    out[..., 0] = z[..., 0] * s
    out[..., 1] = z[..., 1] * s * HOURS_24**0.5
    log_var = np.clip(np.asarray(z[..., 2], dtype=np.float64), -LOG_VAR_CLIP, LOG_VAR_CLIP)
    out[..., 2] = HOURS_24 * s**2 * np.exp(log_var)
    return out


def to_units(raw: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_raw` (non-finite where sigma or the variance is not positive)."""
    s = np.asarray(sigma, dtype=np.float64)
    out = np.empty(np.shape(raw), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[..., 0] = raw[..., 0] / s
        out[..., 1] = raw[..., 1] / (s * HOURS_24**0.5)
        out[..., 2] = np.log(raw[..., 2] / (HOURS_24 * s**2))
    return out


class OnlineModel(ABC):
    name: str = "model"
    n_features: int

    @abstractmethod
    def reset(self, n_streams: int) -> None:
        """Fresh state for ``n_streams`` streams (after pre-training, if any)."""

    @abstractmethod
    def predict(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, F) float32, mask (B, L) bool -> forecasts (B, L, 3) in volatility units."""

    def learn(self, steps: torch.Tensor, y: torch.Tensor, ymask: torch.Tensor) -> None:  # noqa: B027
        """steps (n,) int64, y (B, n, 3) normalised targets, ymask (B, n, 3): newly realised ones."""

    def activity(self) -> dict[str, torch.Tensor]:
        """Per-stream memory activity of the last call (name -> (B,)). Empty for most baselines."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue exactly (tensors, numbers, nested dicts/lists)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    def fit_history(self, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, ymask: torch.Tensor) -> None:  # noqa: B027
        """Optional offline fit on the pre-training window (T, B, F) before streaming starts."""


def task_loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    ymask: torch.Tensor,
    weights: tuple[float, float, float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over realised entries: squared error on clipped returns + QLIKE on the variance ratio.

    pred, y, ymask: (..., 3). QLIKE(rv, v) = rv/v + log v (up to a constant), with v = exp(s):
    the loss the volatility forecast is also scored with, so training and evaluation agree.
    ``weights`` scales the three terms (default 1, 1, 1); a tensor already on the device saves a copy from the
    host per call.
    """
    w = ymask.to(pred.dtype)
    if weights is not None:
        w = w * torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
    r = (pred[..., :2] - y[..., :2].clamp(-RET_CLIP, RET_CLIP)) ** 2
    s = pred[..., 2].clamp(-8.0, 8.0)
    q = y[..., 2].clamp(max=RV_CLIP) * torch.exp(-s) + s
    return (r * w[..., :2]).sum() + (q * w[..., 2]).sum()


def realised_window(s: int, e: int, horizons: tuple[int, ...], valid: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Which (bar, target) entries become known while bars [s, e) close.

    A forecast made at bar t for horizon h is known once bar t+h has closed, so it is new in this
    window iff ``s <= t + h < e``. Returns (t0, new_mask (B, n, K)) for bars t0..t0+n-1.
    ``valid`` (T_all, B, K) says which targets exist at all; it is sliced here.
    """
    hmax = max(horizons)
    t0 = max(0, s - hmax)
    t = torch.arange(t0, e, device=valid.device)
    h = torch.tensor(horizons, device=valid.device)
    due = (t[:, None] + h[None, :] >= s) & (t[:, None] + h[None, :] < e)  # (n, K)
    return t0, valid[t0:e].transpose(0, 1) & due[None]
