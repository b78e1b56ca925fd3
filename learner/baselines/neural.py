"""Neural baselines of Hope's size: GRU and Transformer fine-tuned online with Adam, and a GRU
retrained from scratch every N days on a sliding window (how freqtrade's FreqAI retrains).

All three are pre-trained on the same history window as Hope (``fit_history``), then streamed with
the same features and targets. Online fine-tuning re-runs the network over the bars whose targets
were just realised (from the hidden state kept for the earliest of them) and takes one Adam step.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from learner.baselines.common import Ring
from learner.protocol import OnlineModel, task_loss

RING = 128


class GRUNet(nn.Module):
    def __init__(self, n_features: int, hidden: int):
        super().__init__()
        self.cell = nn.GRUCell(n_features, hidden)
        self.head = nn.Linear(hidden, 3)

    def run(self, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor):
        """x (B,L,F), mask (B,L), h (B,H) -> preds (B,L,3), hidden before each bar (B,L,H), final h."""
        outs, before = [], []
        for t in range(x.shape[1]):
            before.append(h)
            hn = self.cell(x[:, t], h)
            h = torch.where(mask[:, t, None], hn, h)
            outs.append(self.head(h))
        return torch.stack(outs, 1), torch.stack(before, 1), h


class TransformerNet(nn.Module):
    """A small causal Transformer over the last ``window`` bars (sliding-window attention)."""

    def __init__(self, n_features: int, d: int = 32, layers: int = 2, heads: int = 4, window: int = 64):
        super().__init__()
        self.window = window
        self.inp = nn.Linear(n_features, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B,S,F), mask (B,S) -> (B,S,3); position i attends to [i-window+1, i], present bars only."""
        S = x.shape[1]
        i = torch.arange(S)
        allowed = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)  # (S,S)
        keep = allowed[None] & (mask[:, None, :] | torch.eye(S, dtype=torch.bool)[None])  # self always visible
        attn = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
        heads = self.enc.layers[0].self_attn.num_heads
        attn = attn.repeat_interleave(heads, 0)
        h = self.inp(x)  # no positional table: causal masking orders the bars (NoPE); calendar features carry time
        return self.head(self.enc(h, mask=attn))


def _pretrain_windows(x, mask, y, ymask, steps: int, seq: int, batch: int, seed: int):
    """Random (window, asset) batches from the pre-training history: (T,B,..) arrays -> tensors."""
    rng = np.random.default_rng(seed)
    T, B = mask.shape
    for _ in range(steps):
        a = rng.integers(0, T - seq, size=batch)
        b = rng.integers(0, B, size=batch)
        idx = a[:, None] + np.arange(seq)[None]
        yield (
            torch.from_numpy(x[idx, b[:, None]]),
            torch.from_numpy(mask[idx, b[:, None]]),
            torch.from_numpy(y[idx, b[:, None]]),
            torch.from_numpy(ymask[idx, b[:, None]]),
        )


def _step(net: nn.Module, opt: torch.optim.Optimizer, pred: torch.Tensor, y: torch.Tensor, ymask: torch.Tensor) -> None:
    """One optimizer step on the mean task loss of the realised entries (gradient norm clipped to 1)."""
    loss = task_loss(pred, y, ymask) / ymask.sum().clamp(min=1)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()


class OnlineGRU(OnlineModel):
    name = "gru_online"

    def __init__(
        self, n_features: int, names=None, hidden: int = 80, lr: float = 1e-3, seed: int = 0, pretrain_steps: int = 300
    ):
        torch.manual_seed(seed)
        self.n_features, self.hidden, self.lr, self.seed = n_features, hidden, lr, seed
        self.pretrain_steps = pretrain_steps
        self.net = GRUNet(n_features, hidden)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)

    def fit_history(self, x, mask, y, ymask):
        opt = torch.optim.AdamW(self.net.parameters(), lr=3e-3, weight_decay=0.01)
        for xb, mb, yb, vb in _pretrain_windows(x, mask, y, ymask, self.pretrain_steps, 96, 16, self.seed):
            pred, _, _ = self.net.run(xb, mb, torch.zeros(xb.shape[0], self.hidden))
            _step(self.net, opt, pred, yb, vb)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def reset(self, n_streams: int) -> None:
        self.h = torch.zeros(n_streams, self.hidden)
        self.ring_x = Ring(n_streams, RING, (self.n_features,))
        self.ring_m = Ring(n_streams, RING, (), torch.bool)
        self.ring_h = Ring(n_streams, RING, (self.hidden,))
        self.t = 0

    def predict(self, x, mask):
        with torch.no_grad():
            pred, before, self.h = self.net.run(x, mask, self.h)
        for r, v in ((self.ring_x, x), (self.ring_m, mask), (self.ring_h, before)):
            r.put(self.t, v)
        self.t += x.shape[1]
        return pred

    def learn(self, steps, y, ymask):
        rows = ymask.any(-1).any(0).nonzero()
        if not len(rows):
            return
        t0 = int(steps[rows.min()])
        k = t0 - int(steps[0])
        x, m = self.ring_x.get(t0, self.t), self.ring_m.get(t0, self.t)
        pred, _, _ = self.net.run(x, m, self.ring_h.get(t0, t0 + 1)[:, 0])
        n = int(steps[-1]) + 1 - t0
        _step(self.net, self.opt, pred[:, :n], y[:, k:], ymask[:, k:])

    def state_dict(self):
        return {
            "net": copy.deepcopy(self.net.state_dict()),
            "opt": copy.deepcopy(self.opt.state_dict()),
            "h": self.h.clone(),
            "rx": self.ring_x.buf.clone(),
            "rm": self.ring_m.buf.clone(),
            "rh": self.ring_h.buf.clone(),
            "t": self.t,
        }

    def load_state_dict(self, s):
        self.net.load_state_dict(s["net"])
        self.opt.load_state_dict(s["opt"])
        self.h, self.t = s["h"].clone(), s["t"]
        self.ring_x.buf, self.ring_m.buf, self.ring_h.buf = s["rx"].clone(), s["rm"].clone(), s["rh"].clone()


class OnlineTransformer(OnlineModel):
    name = "transformer_online"

    def __init__(
        self,
        n_features: int,
        names=None,
        d: int = 32,
        window: int = 64,
        lr: float = 1e-3,
        seed: int = 0,
        pretrain_steps: int = 300,
    ):
        torch.manual_seed(seed)
        self.n_features, self.window, self.lr, self.seed = n_features, window, lr, seed
        self.pretrain_steps = pretrain_steps
        self.net = TransformerNet(n_features, d=d, window=window)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)

    def fit_history(self, x, mask, y, ymask):
        opt = torch.optim.AdamW(self.net.parameters(), lr=1e-3, weight_decay=0.01)
        for xb, mb, yb, vb in _pretrain_windows(x, mask, y, ymask, self.pretrain_steps, 96, 16, self.seed):
            _step(self.net, opt, self.net(xb, mb), yb, vb)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def reset(self, n_streams: int) -> None:
        self.ring_x = Ring(n_streams, RING, (self.n_features,))
        self.ring_m = Ring(n_streams, RING, (), torch.bool)
        self.t = 0

    def _context(self, t0: int, t1: int):
        a = max(0, t0 - self.window + 1)
        return a, self.ring_x.get(a, t1), self.ring_m.get(a, t1)

    def predict(self, x, mask):
        self.ring_x.put(self.t, x)
        self.ring_m.put(self.t, mask)
        s, self.t = self.t, self.t + x.shape[1]
        a, cx, cm = self._context(s, self.t)
        with torch.no_grad():
            out = self.net(cx, cm)
        return out[:, s - a :]

    def learn(self, steps, y, ymask):
        rows = ymask.any(-1).any(0).nonzero()
        if not len(rows):
            return
        t0 = int(steps[rows.min()])
        t1 = int(steps[-1]) + 1
        k = t0 - int(steps[0])
        a, cx, cm = self._context(t0, t1)
        _step(self.net, self.opt, self.net(cx, cm)[:, t0 - a :], y[:, k:], ymask[:, k:])

    def state_dict(self):
        return {
            "net": copy.deepcopy(self.net.state_dict()),
            "opt": copy.deepcopy(self.opt.state_dict()),
            "rx": self.ring_x.buf.clone(),
            "rm": self.ring_m.buf.clone(),
            "t": self.t,
        }

    def load_state_dict(self, s):
        self.net.load_state_dict(s["net"])
        self.opt.load_state_dict(s["opt"])
        self.ring_x.buf, self.ring_m.buf, self.t = s["rx"].clone(), s["rm"].clone(), s["t"]


class SlidingGRU(OnlineGRU):
    """FreqAI-style: frozen between retrains; every ``every`` bars a fresh GRU is trained from scratch
    on the last ``window`` bars whose targets have been realised."""

    name = "gru_sliding"

    def __init__(
        self,
        n_features: int,
        names=None,
        hidden: int = 80,
        every: int = 720,
        window: int = 2160,
        steps: int = 150,
        seed: int = 0,
        pretrain_steps: int = 300,
    ):
        super().__init__(n_features, names, hidden, seed=seed, pretrain_steps=pretrain_steps)
        self.every, self.window, self.steps = every, window, steps
        self.retrains = 0

    def reset(self, n_streams: int) -> None:
        super().reset(n_streams)
        size = self.window + 64
        self.hx = Ring(n_streams, size, (self.n_features,))
        self.hm = Ring(n_streams, size, (), torch.bool)
        self.hy = Ring(n_streams, size, (3,))
        self.hv = Ring(n_streams, size, (3,), torch.bool)

    def predict(self, x, mask):
        self.hx.put(self.t, x)
        self.hm.put(self.t, mask)
        self.hv.put(self.t, torch.zeros(*mask.shape, 3, dtype=torch.bool))
        return super().predict(x, mask)

    def learn(self, steps, y, ymask):
        idx = torch.arange(int(steps[0]), int(steps[-1]) + 1) % self.hy.size
        old_y, old_v = self.hy.buf[:, idx], self.hv.buf[:, idx]
        self.hy.buf[:, idx] = torch.where(ymask, y, old_y)
        self.hv.buf[:, idx] = old_v | ymask
        if self.t % self.every == 0 and self.t >= self.every:
            self._retrain()

    def _retrain(self) -> None:
        a = max(0, self.t - self.window)
        x, m = self.hx.get(a, self.t).transpose(0, 1), self.hm.get(a, self.t).transpose(0, 1)
        y, v = self.hy.get(a, self.t).transpose(0, 1), self.hv.get(a, self.t).transpose(0, 1)
        if v.sum() < 100 or x.shape[0] < 200:
            return
        torch.manual_seed(self.seed + self.retrains)
        self.net = GRUNet(self.n_features, self.hidden)
        steps, self.pretrain_steps = self.pretrain_steps, self.steps
        self.fit_history(x.numpy(), m.numpy(), y.numpy(), v.numpy())
        self.pretrain_steps = steps
        self.retrains += 1
        # re-run the recent bars so the hidden state belongs to the new weights
        with torch.no_grad():
            a2 = max(0, self.t - 64)
            _, _, self.h = self.net.run(self.hx.get(a2, self.t), self.hm.get(a2, self.t), torch.zeros(self.h.shape))

    def state_dict(self):
        s = super().state_dict()
        s.update(
            {
                "hx": self.hx.buf.clone(),
                "hm": self.hm.buf.clone(),
                "hy": self.hy.buf.clone(),
                "hv": self.hv.buf.clone(),
                "retrains": self.retrains,
            }
        )
        return s

    def load_state_dict(self, s):
        super().load_state_dict(s)
        self.hx.buf, self.hm.buf, self.hy.buf, self.hv.buf = (s[k].clone() for k in ("hx", "hm", "hy", "hv"))
        self.retrains = s["retrains"]
