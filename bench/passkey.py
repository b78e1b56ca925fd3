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

Length curriculum (``--curriculum 96,192,384,768``; default: the single stage ``--train-len``): the
``--steps`` are split evenly over the stages, run in the order given (list them shortest first; the first
``steps % n_stages`` stages get one step more). ``--batch`` is the batch of the first stage; a stage of
length L trains on ``max(1, round(batch * L0 / L))`` sequences (L0 = the first stage's length), so every
step sees about the same number of tokens. On CPU at this width Hope's step time is dominated by its
chunk-by-chunk loop, so its cost per step still grows with L, less than in proportion (measured on a busy
2-core machine, one thread: 96 x 16 ~0.15 s, 192 x 8 ~0.25 s, 384 x 4 ~0.4 s, 768 x 2 ~0.85-0.9 s per
step; 768 x 16 ~1.5 s); the SWA Transformer only ever reads the last ``2 x window + 3`` tokens, so its cost
per step is flat.

Hope's HopeConfig is the library default (learner/hope/config.py) except for the sizes set here (widths,
chunks, CMS periods and their step sizes, which stay inert: no CMS level takes an online step in a
haystack); the JSON records each config actually used (``cfg.to_dict()``) and the curriculum.

    python bench/passkey.py [--steps 1500] [--n-eval 32] [--curriculum 96,192,384,768] [--models hope,titans,swa]

Writes bench/results/passkey.json (``--out``), after every model, with a progress line per training stage
and per test length.
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


def stages(a: argparse.Namespace) -> list[dict]:
    """The curriculum: (length, batch, steps) per stage, shortest first, steps split evenly."""
    lens = [int(x) for x in a.curriculum.split(",")] if a.curriculum else [a.train_len]
    if any(L < 5 for L in lens):
        raise SystemExit("every training length must be >= 5 (needle of 3 tokens, then QUERY)")
    if a.steps < len(lens):
        raise SystemExit(f"--steps {a.steps} < {len(lens)} curriculum stages")
    n, r = divmod(a.steps, len(lens))
    return [{"len": L, "batch": max(1, round(a.batch * lens[0] / L)), "steps": n + (i < r)} for i, L in enumerate(lens)]


def summary(losses: list[float], accs: list[float]) -> dict:
    return {
        "loss_first20": float(np.mean(losses[:20])),
        "loss_last20": float(np.mean(losses[-20:])),
        "train_acc_last20": float(np.mean(accs[-20:])),
    }


def train(model: nn.Module, a: argparse.Namespace, seed: int, name: str, t_all: float) -> dict:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    losses, accs, per_stage = [], [], []
    plan = stages(a)
    t0 = time.perf_counter()
    for k, stg in enumerate(plan):
        ts, sl, sa = time.perf_counter(), [], []
        for _ in range(stg["steps"]):
            toks, dig = make_batch(rng, stg["batch"], stg["len"])
            logits = model.last_logits(toks)
            loss = F.cross_entropy(logits.reshape(-1, 10), dig.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sl.append(loss.item())
            sa.append(float((logits.argmax(-1) == dig).all(-1).float().mean()))
        r = {**stg, "train_s": time.perf_counter() - ts, **summary(sl, sa)}
        per_stage.append(r)
        losses += sl
        accs += sa
        print(f"  {name}: stage {k + 1}/{len(plan)} len {r['len']} x batch {r['batch']}, {r['steps']} steps: "
              f"loss {r['loss_first20']:.2f}->{r['loss_last20']:.2f} acc {r['train_acc_last20']:.0%} "
              f"({r['train_s']:.1f}s; wall {time.perf_counter() - t_all:.0f}s)", flush=True)  # fmt: skip
    return {"train_s": time.perf_counter() - t0, **summary(losses, accs), "stages": per_stage}


@torch.no_grad()
def evaluate(model: nn.Module, length: int, n: int, seed: int) -> dict:
    toks, dig = make_batch(np.random.default_rng(seed), n, length)
    t0 = time.perf_counter()
    logits = model.last_logits(toks)
    hit = (logits.argmax(-1) == dig).all(-1).float()
    return {"acc": float(hit.mean()), "n": n, "eval_s": time.perf_counter() - t0}


MODEL_KEYS = {"hope": "hope", "titans": "titans (no CMS)", "swa": "swa transformer"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500, help="outer steps in all, split evenly over the stages")
    p.add_argument("--batch", type=int, default=16, help="batch of the first (shortest) stage")
    p.add_argument("--train-len", type=int, default=96, help="training length when there is no --curriculum")
    p.add_argument("--curriculum", default="", help="training lengths in order, e.g. 96,192,384,768")
    p.add_argument("--models", default="hope,titans,swa", help="subset of hope,titans,swa")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lengths", default="1024,4096,16384")
    p.add_argument("--n-eval", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "passkey.json")
    a = p.parse_args()
    chosen = [m.strip() for m in a.models.split(",") if m.strip()]
    if not chosen or set(chosen) - set(MODEL_KEYS):
        raise SystemExit(f"--models: a subset of {','.join(MODEL_KEYS)}, got {a.models!r}")
    plan = stages(a)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    # sizes only: every other knob is HopeConfig's default (the CMS step sizes are inert, see the docstring)
    base = dict(n_features=16, n_outputs=20, d_model=16, d_hidden=16, cms_hidden=32, chunk_other=8, chunk_mem=8)
    # all three are always built, in this order, so a subset gets the same initial weights as a full run
    models = {
        "hope": HopeLM(HopeConfig(**base, cms_periods=(64, 256), cms_lr=(1e-3, 3e-4))),
        "titans (no CMS)": HopeLM(HopeConfig(**base, cms_periods=(), cms_lr=())),
    }
    size = n_params(models["hope"])
    d_ff = 16
    while n_params(SWATransformer(16, 2, d_ff + 16, a.window)) <= size:  # the largest MLP within Hope's size
        d_ff += 16
    models["swa transformer"] = SWATransformer(16, 2, d_ff, a.window)
    lengths = [int(x) for x in a.lengths.split(",")]
    out = {
        "config": {**vars(a), "out": str(a.out)},
        "curriculum": plan,
        "hope_config": models["hope"].cfg.to_dict(),
        "models": {},
    }
    print("curriculum: " + ", ".join(f"{s['len']} x {s['batch']} for {s['steps']} steps" for s in plan), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for key in chosen:
        name = MODEL_KEYS[key]
        m = models[name]
        print(f"{name}: {n_params(m)} params (wall {time.perf_counter() - t_all:.0f}s)", flush=True)
        m.train()
        r = {"params": n_params(m)}
        if isinstance(m, HopeLM):
            r["hope_config"] = m.cfg.to_dict()
        r.update(train(m, a, a.seed, name, t_all))
        m.eval()
        r["eval"] = {}
        for i, L in enumerate(lengths):
            e = r["eval"][str(L)] = evaluate(m, L, a.n_eval, a.seed + 1 + i)
            print(f"  {name}: test {L}: acc {e['acc']:.0%} of {e['n']} ({e['eval_s']:.1f}s; "
                  f"wall {time.perf_counter() - t_all:.0f}s)", flush=True)  # fmt: skip
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
        a.out.write_text(json.dumps(out, indent=1))  # after every model, so a long run leaves partial results
    print(f"wrote {a.out} in {out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
