"""S-NIAH-1 pass-key retrieval at small scale (NL arXiv Table 1 / RULER), on CPU.

A haystack of repeated filler (S-NIAH-1's repeated noise sentences: a fixed cycle of filler tokens) hides one
needle ``KEY d1 d2`` at a random depth; the sequence ends with ``QUERY``, where the model must name both
digits (two 10-way heads; chance = 1%). Three models of about the same size, each pre-trained briefly on
short sequences (a length curriculum, below) with AdamW, then tested at 1K, 4K and 16K tokens:

- **Hope**: learner.hope.HopeNet (self-modifying Titans + CMS) with a token-embedding front end; the CMS
  levels run with their meta-learned initial states (there is no realised target inside a haystack, so the
  levels take no online step: a CMS level learns from the task loss, NL eq. 71).
- **Titans without CMS**: the same net with ``cms_periods=()``.
- **SWA Transformer**: embedding, causal depthwise conv (window 4, as Hope's front end), 2 pre-norm layers
  of sliding-window causal attention (window ``--window``, shorter than every test haystack) and MLP, no
  positional encoding. Its output at the last token depends only on the last 2 x window + 3 tokens, so it
  is evaluated on exactly those (the same numbers as running the whole haystack, at a fraction of the cost).

Recurrent models read the whole haystack in chunks under ``torch.no_grad`` (their memories still write).

Length curriculum (default ``--curriculum 32,96,192,384``; ``--curriculum ''`` = the single stage ``--train-len``):
the ``--steps`` are split evenly over the stages, run in the order given (list them shortest first; the first
``steps % n_stages`` stages get one step more). ``--batch`` is the batch of the first stage; a stage of length L
trains on ``max(--min-batch, round(batch * L0 / L))`` sequences (L0 = the first stage's length), so every step sees
about the same number of tokens (more at the long stages, where the floor applies). On CPU Hope's step time is
dominated by its chunk-by-chunk loop, so it grows with L and hardly with the batch (d_model 32, busy 2-core
machine, one thread: 32 x 16 ~0.06-0.09 s, 96 x 5 ~0.1-0.17 s, 192 x 4 ~0.15-0.3 s, 384 x 4 ~0.4-0.6 s per step);
the SWA Transformer only ever reads the last ``2 x window + 3`` tokens, so its cost per step is flat.

The bench's Hope recipe (each a flag, recorded in the JSON with every config actually used, ``cfg.to_dict()``):
d_model 32, the conv taps and the k, v memories initialised off the identity (``--conv-init-std 0.5``,
``--kv-init-std 0.3``; HopeConfig's defaults, 0 and 0.02, keep the market model's init), the retention floor
``--alpha-min 0.99`` (library 0.9); every other knob is HopeConfig's default. Why: docs/results.md, "S-NIAH-1
pass-key at small scale". The CMS periods and step sizes stay inert (no CMS level steps in a haystack).

``--task recall`` is the sanity task: ``--pairs`` triplets ``key d1 d2`` (distinct keys) at the start, ``QUERY``
tokens after, one of the keys last; the same two digit heads.

    python bench/passkey.py [--steps 2000] [--seeds 0,1] [--n-eval 64] [--models hope,titans,swa] [--task recall]

Writes bench/results/passkey.json (``--out``), after every model, with a progress line per training stage
and per test length, the train loss curve, and the accuracy per seed and its mean.
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


def make_recall(rng: np.random.Generator, n: int, length: int, pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The associative-recall sanity task (``--task recall``): ``pairs`` triplets ``key d1 d2`` first (distinct keys,
    drawn from the filler tokens), then ``QUERY`` tokens, and one of the keys last: name its two digits."""
    toks = np.full((n, length), QUERY)
    digits = rng.integers(0, 10, size=(n, pairs, 2))
    asked = rng.integers(0, pairs, size=n)
    for i in range(n):
        keys = FILL0 + rng.choice(N_FILL, size=pairs, replace=False)
        for j in range(pairs):
            toks[i, 3 * j : 3 * j + 3] = (keys[j], *digits[i, j])
        toks[i, -1] = keys[asked[i]]
    return torch.from_numpy(toks), torch.from_numpy(digits[np.arange(n), asked])


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
    return [
        {"len": L, "batch": max(a.min_batch, round(a.batch * lens[0] / L)), "steps": n + (i < r)}
        for i, L in enumerate(lens)
    ]


def summary(losses: list[float], accs: list[float]) -> dict:
    return {
        "loss_first20": float(np.mean(losses[:20])),
        "loss_last20": float(np.mean(losses[-20:])),
        "train_acc_last20": float(np.mean(accs[-20:])),
    }


def sampler(a: argparse.Namespace):
    """(rng, n, length) -> tokens, digits for the chosen task."""
    if a.task == "recall":
        return lambda rng, n, length: make_recall(rng, n, length, a.pairs)
    return make_batch


def train(model: nn.Module, a: argparse.Namespace, seed: int, name: str, t_all: float) -> dict:
    rng = np.random.default_rng(seed)
    draw = sampler(a)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    losses, accs, per_stage = [], [], []
    plan = stages(a)
    t0 = time.perf_counter()
    for k, stg in enumerate(plan):
        ts, sl, sa = time.perf_counter(), [], []
        for _ in range(stg["steps"]):
            toks, dig = draw(rng, stg["batch"], stg["len"])
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
        print(f"  {name} seed {seed}: stage {k + 1}/{len(plan)} len {r['len']} x batch {r['batch']}, {r['steps']} "
              f"steps: loss {r['loss_first20']:.2f}->{r['loss_last20']:.2f} acc {r['train_acc_last20']:.0%} "
              f"({r['train_s']:.1f}s; wall {time.perf_counter() - t_all:.0f}s)", flush=True)  # fmt: skip
    every = max(1, len(losses) // 50)  # the train loss curve: the mean of every ``every`` steps, ~50 points
    curve = [float(np.mean(losses[i : i + every])) for i in range(0, len(losses), every)]
    return {"train_s": time.perf_counter() - t0, **summary(losses, accs), "stages": per_stage,
            "loss_curve_every": every, "loss_curve": curve}  # fmt: skip


@torch.no_grad()
def evaluate(model: nn.Module, a: argparse.Namespace, length: int, seed: int) -> dict:
    """Accuracy on ``a.n_eval`` fresh haystacks of ``length`` tokens, run ``a.eval_batch`` at a time."""
    toks, dig = sampler(a)(np.random.default_rng(seed), a.n_eval, length)
    t0 = time.perf_counter()
    hits = [
        (model.last_logits(toks[i : i + a.eval_batch]).argmax(-1) == dig[i : i + a.eval_batch]).all(-1).float()
        for i in range(0, a.n_eval, a.eval_batch)
    ]
    hit = torch.cat(hits)
    return {"acc": float(hit.mean()), "hits": int(hit.sum()), "n": a.n_eval, "eval_s": time.perf_counter() - t0}


MODEL_KEYS = {"hope": "hope", "titans": "titans (no CMS)", "swa": "swa transformer"}


def hope_configs(a: argparse.Namespace) -> dict[str, HopeConfig]:
    """Hope and Titans-without-CMS: HopeConfig's defaults except the sizes and the bench knobs set here."""
    d, C = a.d_model, a.chunk
    knobs = dict(
        n_features=d, n_outputs=20, d_model=d, d_hidden=d, cms_hidden=2 * d, chunk_other=C, chunk_mem=C,
        conv_init_std=a.conv_init_std, kv_init_std=a.kv_init_std, alpha_min=a.alpha_min, eta_max=a.eta_max,
        inner_clip=a.inner_clip,
    )  # fmt: skip
    # CMS periods: multiples of the chunk; their step sizes stay inert (no CMS level steps in a haystack)
    return {
        "hope": HopeConfig(**knobs, cms_periods=(8 * C, 32 * C), cms_lr=(1e-3, 3e-4)),
        "titans (no CMS)": HopeConfig(**knobs, cms_periods=(), cms_lr=()),
    }


def build(a: argparse.Namespace, seed: int) -> dict[str, nn.Module]:
    """The three models, always built in this order from ``seed``, so a subset gets the same initial weights."""
    torch.manual_seed(seed)
    models: dict[str, nn.Module] = {name: HopeLM(cfg) for name, cfg in hope_configs(a).items()}
    size, d = n_params(models["hope"]), a.d_model
    d_ff = 16
    while n_params(SWATransformer(d, 2, d_ff + 16, a.window)) <= size:  # the largest MLP within Hope's size
        d_ff += 16
    models["swa transformer"] = SWATransformer(d, 2, d_ff, a.window)
    return models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("passkey", "recall"), default="passkey", help="recall: the sanity task")
    p.add_argument("--pairs", type=int, default=4, help="--task recall: key/value triplets per sequence")
    p.add_argument("--steps", type=int, default=2000, help="outer steps in all, split evenly over the stages")
    p.add_argument("--batch", type=int, default=16, help="batch of the first (shortest) stage")
    p.add_argument("--min-batch", type=int, default=4, help="no stage trains on fewer sequences")
    p.add_argument("--train-len", type=int, default=96, help="training length when there is no --curriculum")
    p.add_argument("--curriculum", default="32,96,192,384", help="training lengths in order ('' = --train-len)")
    p.add_argument("--models", default="hope,titans,swa", help="subset of hope,titans,swa")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; each trains every model afresh")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    # Hope/Titans knobs (HopeConfig); the defaults here are the bench's recipe, not the library's (docs/results.md)
    p.add_argument("--d-model", type=int, default=32, help="width of every model (library default 32; old bench 16)")
    p.add_argument("--chunk", type=int, default=8, help="chunk_other = chunk_mem")
    p.add_argument("--conv-init-std", type=float, default=0.5, help="HopeConfig.conv_init_std (library default 0)")
    p.add_argument("--kv-init-std", type=float, default=0.3, help="HopeConfig.kv_init_std (library default 0.02)")
    p.add_argument("--alpha-min", type=float, default=0.99, help="HopeConfig.alpha_min (library 0.9)")
    p.add_argument("--eta-max", type=float, default=0.05, help="HopeConfig.eta_max")
    p.add_argument("--inner-clip", type=float, default=1.0, help="HopeConfig.inner_clip")
    p.add_argument("--lengths", default="1024,4096,16384")
    p.add_argument("--n-eval", type=int, default=64)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "passkey.json")
    a = p.parse_args()
    chosen = [m.strip() for m in a.models.split(",") if m.strip()]
    if not chosen or set(chosen) - set(MODEL_KEYS):
        raise SystemExit(f"--models: a subset of {','.join(MODEL_KEYS)}, got {a.models!r}")
    seeds = [int(x) for x in a.seeds.split(",")]
    plan = stages(a)
    torch.set_num_threads(1)
    lengths = [int(x) for x in a.lengths.split(",")]
    cfgs = hope_configs(a)
    out = {
        "config": {**vars(a), "out": str(a.out)},
        "curriculum": plan,
        "hope_config": cfgs["hope"].to_dict(),
        "models": {},
        "machine": platform.platform(),
    }
    print("curriculum: " + ", ".join(f"{s['len']} x {s['batch']} for {s['steps']} steps" for s in plan), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for seed in seeds:
        models = build(a, seed)
        for key in chosen:
            name = MODEL_KEYS[key]
            m = models[name]
            print(f"{name} seed {seed}: {n_params(m)} params (wall {time.perf_counter() - t_all:.0f}s)", flush=True)
            entry = out["models"].setdefault(name, {"params": n_params(m), "seeds": {}})
            if isinstance(m, HopeLM):
                entry["hope_config"] = m.cfg.to_dict()
            m.train()
            r = train(m, a, seed, name, t_all)
            m.eval()
            r["eval"] = {}
            for i, L in enumerate(lengths):
                e = r["eval"][str(L)] = evaluate(m, a, L, 1000 * (seed + 1) + i)
                print(f"  {name} seed {seed}: test {L}: acc {e['acc']:.0%} ({e['hits']}/{e['n']}; {e['eval_s']:.1f}s; "
                      f"wall {time.perf_counter() - t_all:.0f}s)", flush=True)  # fmt: skip
            if isinstance(m, HopeLM):  # the learned gate biases (their data-dependent parts are not recorded)
                r["alpha_bias"] = m.net.titans.alpha_bias.item()
                r["eta_bias"] = m.net.titans.eta_bias.item()
            entry["seeds"][str(seed)] = r
            entry["eval_mean"] = {
                str(L): float(np.mean([s["eval"][str(L)]["acc"] for s in entry["seeds"].values()])) for L in lengths
            }
            accs = "  ".join(f"{L}: {e['acc']:.0%}" for L, e in r["eval"].items())
            print(f"{name:16s} seed {seed} params {n_params(m):6d}  train loss {r['loss_first20']:.2f}->"
                  f"{r['loss_last20']:.2f} acc {r['train_acc_last20']:.0%} ({r['train_s']:.0f}s)  test {accs}",
                  flush=True)  # fmt: skip
            out["wall_s"] = time.perf_counter() - t_all
            a.out.write_text(json.dumps(out, indent=1))  # after every model, so a long run leaves partial results
    print(f"wrote {a.out} in {out['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
