"""Online calibration of Hope's return forecasts: a ridge shrinkage toward zero, fitted on released targets only.

Why: hourly and daily returns are close to unpredictable, and the pre-trained net's return outputs are
overconfident — on the validation split they score worse than the zero forecast, while the hindsight-best constant
multiple of them (x0.14 for 1h) is barely better than zero (docs/results.md, issue 12). A multiple fitted online,
with a prior that holds it at zero until the evidence says otherwise, starts as the zero forecast and cannot do
much worse than it, while keeping whatever signal the forecast has (its sign and cross-asset rank when c > 0).

For each return output k (1h, 24h), with f the net's raw forecast and y the realised target (volatility units,
clipped like the training loss), pooled over the streams and discounted with half-life H bars:

    S_fy = sum gamma^age f y,   S_ff = sum gamma^age f^2,   n = sum gamma^age            (per-stream means)
    c_k  = clamp( S_fy / (S_ff + n_0 S_ff / n), 0, 1 )  =  clamp( (S_fy / S_ff) n / (n + n_0), 0, 1 )

i.e. least squares of y on f with a Gaussian prior at c = 0 worth n_0 bars of the forecast's own scale
(``ret_calib_prior``); c = 0 before any target is released. The forecast returned is c_k f. c is refreshed, and
the evidence discounted, only when the bar clock reaches a multiple of ``ret_calib_period`` (like a CMS level,
eq. 71), so the forecasts are the same whether the stream is fed one bar or a chunk per call. CHOICE: one c per
output shared by every stream (a property of the shared head; one asset's history is too short to estimate it),
and clamped to [0, 1]: a shrinkage never flips or amplifies the forecast. The volatility output and everything
the model learns from (the CMS levels take their gradients at the raw readout) are untouched.

State: the statistics (3, 2), the evidence pending since the last refresh, and a ring of the raw return forecasts
(B, RING, 2), so a target released up to RING bars later finds its forecast; all of it travels with the model's
checkpoint (c does not: it is a function of the statistics).
"""

from __future__ import annotations

import torch

from learner.hope.config import HopeConfig
from learner.protocol import RET_CLIP


class ReturnCalibration:
    def __init__(self, cfg: HopeConfig, n_streams: int, ring: int, device: torch.device):
        self.prior, self.period = cfg.ret_calib_prior, cfg.ret_calib_period
        self.gamma = 0.5 ** (1.0 / cfg.ret_calib_halflife) if cfg.ret_calib_halflife > 0 else 1.0
        self.stats = torch.zeros(3, 2, device=device)  # rows S_fy, S_ff, n; columns ret_1h, ret_24h
        self.pending = torch.zeros(3, 2, device=device)  # evidence released since the last refresh
        self.epoch = 0  # clock // period at the last refresh
        self.c = torch.zeros(2, device=device)  # the multiple in use
        self.ring = torch.zeros(n_streams, ring, 2, device=device)  # raw return forecasts of the last bars

    def factor(self) -> torch.Tensor:
        """c (2,) from the statistics: the multiple of the raw return forecasts, in [0, 1]."""
        s_fy, s_ff, n = self.stats
        return (s_fy * n / (s_ff * (n + self.prior)).clamp(min=1e-12)).clamp(0.0, 1.0)

    def apply(self, pred: torch.Tensor, slots: slice | torch.Tensor, keep: int) -> torch.Tensor:
        """pred (B,L,3) raw -> calibrated; the call's last ``keep`` raw return forecasts go to ring ``slots``."""
        self.ring[:, slots] = pred[:, pred.shape[1] - keep :, :2]
        return torch.cat([pred[..., :2] * self.c, pred[..., 2:]], dim=-1)

    def update(self, index: slice | torch.Tensor, y: torch.Tensor, ymask: torch.Tensor) -> None:
        """Add released targets: y, ymask (B,n,3) of the forecasts at ring ``index`` (n bars)."""
        f = self.ring[:, index]  # (B,n,2)
        w = ymask[..., :2].to(f.dtype)
        yc = y[..., :2].clamp(-RET_CLIP, RET_CLIP) * w
        B = f.shape[0]
        add = torch.stack([(f * yc).sum((0, 1)), (f * f * w).sum((0, 1)), w.sum((0, 1))]) / B  # per-stream means
        self.pending = self.pending + add

    def tick(self, step: int) -> None:
        """At the clock's multiples of ``period``: discount, take in the pending evidence, refresh c. On the
        clock, not per call, so the forecasts do not depend on how the stream is cut into calls (as eq. 71)."""
        k = step // self.period
        if k > self.epoch:
            self.stats = self.stats * self.gamma ** (self.period * (k - self.epoch)) + self.pending
            self.pending = torch.zeros_like(self.pending)
            self.epoch, self.c = k, self.factor()

    def state_dict(self) -> dict:
        """The statistics, pending evidence, ring and epoch; not c, which :meth:`factor` derives from them."""
        t = {"stats": self.stats, "pending": self.pending, "ring": self.ring}
        return {**{k: v.detach().cpu().clone() for k, v in t.items()}, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        dev = self.stats.device
        self.stats, self.pending = state["stats"].to(dev), state["pending"].to(dev)
        self.ring, self.epoch = state["ring"].to(dev), int(state["epoch"])
        self.c = self.factor()  # c is refreshed only with the statistics (tick), so it is their function
