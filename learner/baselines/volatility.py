"""Classical volatility forecasters: EWMA (RiskMetrics), HAR-RV (online least squares), GARCH(1,1).

All forecast zero mean returns (the honest default for hourly crypto returns) and a next-day
variance in volatility units, ``log_var_24h = log(rv_24h / (24 sigma^2))``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from learner.baselines.common import Ring, col, r2_norm
from learner.protocol import OnlineModel


class EWMAVol(OnlineModel):
    """RiskMetrics: var <- lam var + (1 - lam) r^2, forecast 24 * var for the next day.

    RiskMetrics' daily lambda 0.94 is a half-life of 11.2 days; on hourly bars the same half-life is
    lambda = 0.94 ** (1 / 24) = 0.99742.
    """

    name = "ewma"

    def __init__(self, n_features: int, names: list[str] | None = None, lam: float = 0.94 ** (1 / 24)):
        self.n_features, self.names, self.lam = n_features, names, lam

    def reset(self, n_streams: int) -> None:
        self.var = torch.ones(n_streams)

    def predict(self, x, mask):
        r2 = r2_norm(x, self.names)
        out = torch.zeros(*x.shape[:2], 3)
        for t in range(x.shape[1]):
            upd = self.lam * self.var + (1 - self.lam) * r2[:, t]
            self.var = torch.where(mask[:, t], upd, self.var)
            out[:, t, 2] = torch.log(self.var.clamp(min=1e-4))
        return out

    def state_dict(self):
        return {"var": self.var.clone()}

    def load_state_dict(self, state):
        self.var = state["var"].clone()


class HARRV(OnlineModel):
    """HAR-RV (Corsi 2009) on log realised variance: hourly, 6h, daily and weekly components.

    Fitted by recursive least squares pooled over assets as targets are realised, with a slow
    forgetting factor; the log-normal bias of the variance forecast is corrected by a running mean
    of exp(residual).
    """

    name = "har"
    REGS = ("lrv_1h", "lrv_6h", "lrv_24h", "lrv_168h")

    def __init__(self, n_features: int, names: list[str] | None = None, forget: float = 0.99995):
        self.n_features, self.names, self.forget = n_features, names, forget
        self.idx = [col(names, n) for n in self.REGS]

    def reset(self, n_streams: int) -> None:
        k = len(self.REGS) + 1
        self.beta = np.zeros(k)
        self.P = np.eye(k) * 100.0
        self.bias = 1.0  # E[exp(resid)]
        self.ring = Ring(n_streams, 64, (k,))
        self.t = 0

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones(*x.shape[:2], 1), x[..., self.idx]], dim=-1)

    def predict(self, x, mask):
        z = self._z(x)
        self.ring.put(self.t, z)
        self.t += x.shape[1]
        out = torch.zeros(*x.shape[:2], 3)
        out[..., 2] = torch.from_numpy(z.numpy() @ self.beta + math.log(self.bias)).float()
        return out

    def learn(self, steps, y, ymask):
        z = self.ring.get(int(steps[0]), int(steps[-1]) + 1).numpy()
        m = ymask[..., 2].numpy()
        target = np.log(y[..., 2].numpy() + 1e-3)
        for b, i in zip(*np.nonzero(m), strict=True):
            zi = z[b, i]
            Pz = self.P @ zi
            g = Pz / (self.forget + zi @ Pz)
            err = target[b, i] - zi @ self.beta
            self.beta += g * err
            self.P = (self.P - np.outer(g, Pz)) / self.forget
            self.bias = 0.999 * self.bias + 0.001 * math.exp(min(err, 5.0))

    def state_dict(self):
        return {
            "beta": torch.from_numpy(self.beta.copy()),
            "P": torch.from_numpy(self.P.copy()),
            "bias": self.bias,
            "ring": self.ring.buf.clone(),
            "t": self.t,
        }

    def load_state_dict(self, s):
        self.beta, self.P, self.bias, self.t = s["beta"].numpy().copy(), s["P"].numpy().copy(), s["bias"], s["t"]
        self.ring.buf = s["ring"].clone()


class GARCH11(OnlineModel):
    """GARCH(1,1) per asset, re-estimated with ``arch`` every ``refit`` bars on a trailing window.

    Between fits the conditional variance is filtered bar by bar with the fitted parameters; the
    next-day forecast sums the 24 one-step-ahead expectations, which revert to omega / (1 - a - b).
    """

    name = "garch"

    def __init__(self, n_features: int, names: list[str] | None = None, refit: int = 168, window: int = 1440):
        self.n_features, self.names, self.refit, self.window = n_features, names, refit, window
        self.ir = col(names, "r_1h")

    def reset(self, n_streams: int) -> None:
        B = n_streams
        self.params = np.tile([0.05, 0.10, 0.85], (B, 1))  # omega, alpha, beta before the first fit
        self.var = np.ones(B)
        self.hist = np.zeros((B, self.window))
        self.hmask = np.zeros((B, self.window), dtype=bool)
        self.t = 0

    def _fit(self, b: int) -> None:
        from arch import arch_model

        r = self.hist[b][self.hmask[b]]
        if len(r) < 500:
            return
        try:
            res = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(
                disp="off", show_warning=False, options={"maxiter": 200}
            )
            w, a, bb = (float(res.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
        except (ValueError, np.linalg.LinAlgError):
            return
        if np.isfinite([w, a, bb]).all() and w > 0 and a + bb < 0.999:
            self.params[b] = (w, a, bb)

    def predict(self, x, mask):
        r = x[..., self.ir].numpy().astype(np.float64)
        mk = mask.numpy()
        B, L = r.shape
        out = torch.zeros(B, L, 3)
        for t in range(L):
            if (self.t + t) % self.refit == 0 and self.t + t > 0:
                for b in range(B):
                    self._fit(b)
            w, a, bb = self.params.T
            upd = w + a * r[:, t] ** 2 + bb * self.var
            self.var = np.where(mk[:, t], upd, self.var)
            pos = (self.t + t) % self.window
            self.hist[:, pos], self.hmask[:, pos] = r[:, t], mk[:, t]
            # next-bar variance is self.var; sum of the next 24 expectations
            persist = np.clip(a + bb, 0.0, 0.999)
            V = w / (1 - persist)
            h = np.arange(24)
            tot = (V[:, None] + persist[:, None] ** h[None] * (self.var - V)[:, None]).sum(1)
            out[:, t, 2] = torch.from_numpy(np.log(np.maximum(tot / 24, 1e-4))).float()
        self.t += L
        return out

    def state_dict(self):
        return {
            "params": torch.from_numpy(self.params.copy()),
            "var": torch.from_numpy(self.var.copy()),
            "hist": torch.from_numpy(self.hist.copy()),
            "hmask": torch.from_numpy(self.hmask.copy()),
            "t": self.t,
        }

    def load_state_dict(self, s):
        self.params, self.var = s["params"].numpy().copy(), s["var"].numpy().copy()
        self.hist, self.hmask, self.t = s["hist"].numpy().copy(), s["hmask"].numpy().copy(), s["t"]
