"""An online linear model from River, pooled over assets: one regressor per target.

Each bar's features are kept until its targets are realised, then ``learn_one`` is called once per
(asset, target). The variance head regresses log realised variance; its log-normal bias is corrected
with a running mean of exp(residual), as for HAR.
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
        # River models are plain Python objects; they are checkpointed through pickle bytes as a tensor
        # so the safe loader (weights_only=True) still reads the file.
        import pickle

        blob = pickle.dumps(self.models)
        return {
            "models": torch.frombuffer(bytearray(blob), dtype=torch.uint8),
            "bias": self.bias,
            "ring": self.ring.buf.clone(),
            "t": self.t,
        }

    def load_state_dict(self, s):
        import pickle

        self.models = pickle.loads(s["models"].numpy().tobytes())  # noqa: S301 - our own checkpoint
        self.bias, self.t = s["bias"], s["t"]
        self.ring.buf = s["ring"].clone()
