"""S-NIAH-1 pass-key retrieval at small scale (NL arXiv Table 1 / RULER), on CPU.

A haystack of repeated filler (S-NIAH-1's repeated noise sentences: a fixed cycle of filler tokens) hides one
needle ``KEY d1 d2`` at a random depth; the sequence ends with ``QUERY``, where the model must name both
digits (two 10-way heads; chance = 1%). Three models of about the same size, each pre-trained briefly on
short sequences (``--train-len`` tokens) with AdamW, then tested at 1K, 4K and 16K tokens:

- **Hope**: learner.hope.HopeNet (self-modifying Titans + CMS) with a token-embedding front end; the CMS
  levels run with their meta-learned initial states (there is no realised target inside a haystack, so the
  levels take no online step: a CMS level learns from the task loss, NL eq. 71).
- **Titans without CMS**: the same net with ``cms_periods=()``.
- **SWA Transformer**: embedding, causal depthwise conv (window 4, as Hope's front end), 2 pre-norm layers
  of sliding-window causal attention (window ``--window``, shorter than every test haystack) and MLP, no
  positional encoding. Its output at the last token depends only on the last 2 x window + 3 tokens, so it
  is evaluated on exactly those (the same numbers as running the whole haystack, at a fraction of the cost).

Recurrent models read the whole haystack in chunks under ``torch.no_grad`` (their memories still write).

    python bench/passkey.py [--steps 1500] [--n-eval 32]

Writes bench/results/passkey.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner.hope.config import HopeConfig  # noqa: E402
from learner.hope.model import HopeNet  # noqa: E402

KEY, QUERY, FILL0, N_FILL = 10, 11, 12, 16
VOCAB = FILL0 + N_FILL


def make_batch(rng: np.random.Generator, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of ``length`` tokens: repeated filler, ``KEY d1 d2`` at a random depth, ``QUERY`` last."""
    phase = rng.integers(0, N_FILL, size=n)
    toks = FILL0 + (np.arange(length)[None, :] + phase[:, None]) % N_FILL
    digits = rng.integers(0, 10, size=(n, 2))
    pos = rng.integers(0, length - 4, size=n)  # the needle ends before QUERY
    for i in range(n):
        toks[i, pos[i] : pos[i] + 3] = (KEY, digits[i, 0], digits[i, 1])
    toks[:, -1] = QUERY
    return torch.from_numpy(toks), torch.from_numpy(digits)


class HopeLM(nn.Module):
    """Tokens -> embeddings (the 'features' of HopeNet) -> HopeNet -> 20 logits (two digits) at each token."""

    def __init__(self, cfg: HopeConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(VOCAB, cfg.n_features)
        self.net = HopeNet(cfg)

    def last_logits(self, toks: torch.Tensor) -> torch.Tensor:
        """Run the whole sequence chunk by chunk (memories write in context); logits (B, 2, 10) at the end."""
        B, L = toks.shape
        C = self.cfg.chunk_other
        st = self.net.init_state(B)
        mask = torch.ones(B, C, dtype=torch.bool)
        pred = None
        for s in range(0, L, C):
            x = self.emb(toks[:, s : s + C])
            pred, _, st, _ = self.net(st, x, mask[:, : x.shape[1]])
        return pred[:, -1].view(B, 2, 10)


class SWALayer(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.heads = heads

    def forward(self, x: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (B,h,L,hs)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=band)
        x = x + self.o(a.transpose(1, 2).reshape(B, L, d))
        return x + self.ff(self.n2(x))


class SWATransformer(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int, window: int, layers: int = 2):
        super().__init__()
        self.window = window
        self.emb = nn.Embedding(VOCAB, d)
        self.conv = nn.Conv1d(d, d, 4, groups=d)
        self.layers = nn.ModuleList(SWALayer(d, heads, d_ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 20)

    def last_logits(self, toks: torch.Tensor) -> torch.Tensor:
        toks = toks[:, -(len(self.layers) * self.window + 3) :]  # the last token's whole receptive field
        L = toks.shape[1]
        x = self.emb(toks).transpose(1, 2)
        x = self.conv(F.pad(x, (3, 0))).transpose(1, 2)  # causal depthwise conv, window 4
        i = torch.arange(L)
        band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - self.window)  # causal sliding window
        for layer in self.layers:
            x = layer(x, band)
        return self.head(self.norm(x[:, -1])).view(-1, 2, 10)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def train(model: nn.Module, a: argparse.Namespace, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    losses, accs = [], []
    t0 = time.perf_counter()
    for _ in range(a.steps):
        toks, dig = make_batch(rng, a.batch, a.train_len)
        logits = model.last_logits(toks)
        loss = F.cross_entropy(logits.reshape(-1, 10), dig.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        accs.append(float((logits.argmax(-1) == dig).all(-1).float().mean()))
    return {
        "train_s": time.perf_counter() - t0,
        "loss_first20": float(np.mean(losses[:20])),
        "loss_last20": float(np.mean(losses[-20:])),
        "train_acc_last20": float(np.mean(accs[-20:])),
    }


@torch.no_grad()
def evaluate(model: nn.Module, length: int, n: int, seed: int) -> dict:
    toks, dig = make_batch(np.random.default_rng(seed), n, length)
    t0 = time.perf_counter()
    logits = model.last_logits(toks)
    hit = (logits.argmax(-1) == dig).all(-1).float()
    return {"acc": float(hit.mean()), "n": n, "eval_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train-len", type=int, default=96)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lengths", default="1024,4096,16384")
    p.add_argument("--n-eval", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    base = dict(n_features=16, n_outputs=20, d_model=16, d_hidden=16, cms_hidden=32, chunk_other=8, chunk_mem=8)
    models = {
        "hope": HopeLM(HopeConfig(**base, cms_periods=(64, 256), cms_lr=(1e-3, 3e-4))),
        "titans (no CMS)": HopeLM(HopeConfig(**base, cms_periods=(), cms_lr=())),
    }
    size = n_params(models["hope"])
    d_ff = 16
    while n_params(SWATransformer(16, 2, d_ff + 16, a.window)) <= size:  # the largest MLP within Hope's size
        d_ff += 16
    models["swa transformer"] = SWATransformer(16, 2, d_ff, a.window)
    out = {"config": vars(a), "hope_config": base, "models": {}}
    t_all = time.perf_counter()
    for name, m in models.items():
        r = {"params": n_params(m), **train(m, a, a.seed)}
        m.eval()
        r["eval"] = {
            str(L): evaluate(m, L, a.n_eval, a.seed + 1 + i) for i, L in enumerate(map(int, a.lengths.split(",")))
        }
        if isinstance(m, HopeLM):  # what the retention gate learned: alpha per token on the haystack filler
            tit = m.net.titans
            r["alpha_bias"] = tit.alpha_bias.item()
            r["eta_bias"] = tit.eta_bias.item()
        out["models"][name] = r
        accs = "  ".join(f"{L}: {e['acc']:.0%}" for L, e in r["eval"].items())
        print(f"{name:16s} params {r['params']:6d}  train loss {r['loss_first20']:.2f}->{r['loss_last20']:.2f} "
              f"acc {r['train_acc_last20']:.0%} ({r['train_s']:.0f}s)  test {accs}", flush=True)  # fmt: skip
    out["wall_s"] = time.perf_counter() - t_all
    out["machine"] = platform.platform()
    dest = ROOT / "bench" / "results" / "passkey.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest} in {out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
