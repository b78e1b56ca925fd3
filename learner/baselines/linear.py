"""An online linear model from River, pooled over assets: one regressor per target.

Each bar's features are kept until its targets are realised, then ``learn_one`` is called once per
(asset, target). The variance head regresses log realised variance; its log-normal bias is corrected
with a running mean of exp(residual), as for HAR.

Its checkpoint is plain numbers (River's running statistics, weights and intercept, read out and put
back into a freshly built pipeline), never pickled objects: loading a checkpoint runs no code.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from learner.baselines.common import Ring
from learner.protocol import RET_CLIP, OnlineModel


class RiverLinear(OnlineModel):
    name = "river_linear"

    def __init__(self, n_features: int, names: list[str] | None = None, lr: float = 0.001):
        self.n_features, self.lr = n_features, lr
        self.keys = [f"f{i}" for i in range(n_features)]

    def _new(self):
        from river import linear_model, optim, preprocessing

        return preprocessing.StandardScaler() | linear_model.LinearRegression(
            optimizer=optim.SGD(self.lr), l2=1e-4, intercept_lr=self.lr
        )

    def reset(self, n_streams: int) -> None:
        self.models = [self._new() for _ in range(3)]
        self.bias = 1.0
        self.ring = Ring(n_streams, 64, (self.n_features,))
        self.t = 0

    def predict(self, x, mask):
        self.ring.put(self.t, x)
        self.t += x.shape[1]
        xs = x.numpy()
        mk = mask.numpy()
        out = np.zeros((*xs.shape[:2], 3), dtype=np.float32)
        for b, t in zip(*np.nonzero(mk), strict=True):
            d = dict(zip(self.keys, xs[b, t].tolist(), strict=True))
            out[b, t, 0] = self.models[0].predict_one(d)
            out[b, t, 1] = self.models[1].predict_one(d)
            out[b, t, 2] = self.models[2].predict_one(d) + math.log(self.bias)
        return torch.from_numpy(out)

    def learn(self, steps, y, ymask):
        xs = self.ring.get(int(steps[0]), int(steps[-1]) + 1).numpy()
        yy, mm = y.numpy(), ymask.numpy()
        for b, i in zip(*np.nonzero(mm.any(-1)), strict=True):
            d = dict(zip(self.keys, xs[b, i].tolist(), strict=True))
            for k in range(3):
                if not mm[b, i, k]:
                    continue
                if k < 2:
                    self.models[k].learn_one(d, float(np.clip(yy[b, i, k], -RET_CLIP, RET_CLIP)))
                else:
                    target = math.log(yy[b, i, 2] + 1e-3)
                    err = target - self.models[2].predict_one(d)
                    self.bias = 0.999 * self.bias + 0.001 * math.exp(min(err, 5.0))
                    self.models[2].learn_one(d, target)

    def state_dict(self):
        # Plain numbers only (no pickle): torch.load(weights_only=True) reads it and it runs no code.
        return {
            "models": [_river_state(m) for m in self.models],
            "bias": self.bias,
            "ring": self.ring.buf.clone(),
            "t": self.t,
        }

    def load_state_dict(self, s):
        models = s["models"]
        if not isinstance(models, list) or len(models) != 3 or not all(isinstance(m, dict) for m in models):
            raise ValueError("river_linear state in an older layout (pickled River objects), not plain numbers")
        self.models = [self._new() for _ in range(3)]
        for m, st in zip(self.models, models, strict=True):
            _river_restore(m, st)
        self.bias, self.t = float(s["bias"]), int(s["t"])
        self.ring.buf = s["ring"].clone()


# River's pipeline ``StandardScaler | LinearRegression(optimizer=SGD(lr), l2, intercept_lr)`` keeps all it
# learns in: the scaler's per-feature Welford ``counts``, ``means`` and ``vars`` (dicts), the regression's
# ``_weights`` (a VectorDict wrapping a plain dict) and ``intercept``, and the optimizer's ``n_iterations``
# (which drives its learning-rate schedule; constant here, kept so any schedule resumes exactly). Loss,
# l2 and learning rates are fixed by ``RiverLinear._new``. Dicts keep their insertion order, so sums over
# features run in the same order after a restore and predictions are bit-identical.
_RIVER_KEYS = ("counts", "means", "vars", "weights", "intercept", "n_iterations")


def _river_steps(model):
    from river import linear_model, preprocessing

    scaler, reg = model.steps.values()
    plain_scaler = isinstance(scaler, preprocessing.StandardScaler) and scaler.window_size is None
    if not (plain_scaler and isinstance(reg, linear_model.LinearRegression) and reg.l1 == 0):
        raise TypeError(f"river_linear checkpoints cover StandardScaler | LinearRegression(l1=0), not {model}")
    return scaler, reg


def _river_state(model) -> dict:
    scaler, reg = _river_steps(model)
    return {
        "counts": {k: int(v) for k, v in scaler.counts.items()},
        "means": {k: float(v) for k, v in scaler.means.items()},
        "vars": {k: float(v) for k, v in scaler.vars.items()},
        "weights": {k: float(v) for k, v in reg._weights.to_dict().items()},
        "intercept": float(reg.intercept),
        "n_iterations": int(reg.optimizer.n_iterations),
    }


def _river_restore(model, st: dict) -> None:
    """Put a :func:`_river_state` into a freshly built pipeline (``RiverLinear._new``)."""
    from river import utils

    missing = [k for k in _RIVER_KEYS if k not in st]
    if missing:
        raise KeyError(f"river_linear state lacks {', '.join(missing)}")
    scaler, reg = _river_steps(model)
    scaler.counts.update({str(k): int(v) for k, v in st["counts"].items()})
    scaler.means.update({str(k): float(v) for k, v in st["means"].items()})
    scaler.vars.update({str(k): float(v) for k, v in st["vars"].items()})
    reg._weights = utils.VectorDict({str(k): float(v) for k, v in st["weights"].items()})
    reg.intercept = float(st["intercept"])
    reg.optimizer.n_iterations = int(st["n_iterations"])
