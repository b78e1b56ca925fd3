"""Model names as the command line spells them, and how each is built and pre-trained.

Names: ``hope``, ``hope-no-cms``, ``hope-frozen``, ``ewma``, ``har``, ``garch``, ``river_linear``,
``gru_online``, ``transformer_online``, ``gru_sliding``; Hope variants take options in brackets:
``hope[opt=momentum,no-dgd,no-momentum,levels=2,lowest-period=168]``.

Two attribution variants switch one kind of online learning off and keep the other:
``hope[no-writes]`` (the self-modifying memories never write; the CMS levels still step online) and
``hope[no-cms-online]`` (the memories write; the CMS levels never step online). ``hope-frozen`` switches
both off, and the return calibration with them. ``hope[ret-calib]`` shrinks the return outputs toward zero
online (``learner.hope.calibration``; on by default; ``ret-calib=N``: a prior of N bars, ``ret-calib-hl=N``: a
half-life of N bars); it changes nothing pre-trained. ``hope[no-ret-calib]`` switches it off (the raw return
outputs, as before the calibration existed) on the same pre-trained net.

Pre-training is shared where the architecture is the same: ``hope``, ``hope-frozen``, ``hope[no-writes]``
and ``hope[no-cms-online]`` run the same meta-weights (they differ only online); an architectural change
(no CMS, fewer levels, no DGD, no momentum) is pre-trained on its own with the same budget.

Learning models (every Hope variant, the neural baselines) depend on a seed: the pre-training seed and
torch's initialisation seed (:func:`is_seeded`); the classical ones (ewma, har, garch, river_linear) are
deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from continuum.errors import UserError
from learner.baselines.linear import RiverLinear
from learner.baselines.neural import OnlineGRU, OnlineTransformer, SlidingGRU
from learner.baselines.volatility import GARCH11, HARRV, EWMAVol
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.hope.online import Hope
from learner.protocol import OnlineModel

BASELINES: dict[str, type] = {
    "ewma": EWMAVol,
    "har": HARRV,
    "garch": GARCH11,
    "river_linear": RiverLinear,
    "gru_online": OnlineGRU,
    "transformer_online": OnlineTransformer,
    "gru_sliding": SlidingGRU,
}
NEURAL = ("gru_online", "transformer_online", "gru_sliding")
HOPE_NAMES = ("hope", "hope-no-cms", "hope-frozen")
ALL_MODELS = (*HOPE_NAMES, *BASELINES)
DEFAULT_MODELS = ALL_MODELS
_SPEC = re.compile(r"^(?P<base>[a-z_\-]+)(\[(?P<opts>[^\]]*)\])?$")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    m = _SPEC.match(spec.strip())
    if not m or m.group("base") not in ALL_MODELS:
        import difflib

        close = difflib.get_close_matches(spec.split("[")[0], ALL_MODELS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(ALL_MODELS)}"
        raise UserError(f"unknown model {spec!r}{hint}")
    opts: dict[str, str] = {}
    for part in filter(None, (m.group("opts") or "").split(",")):
        k, _, v = part.strip().partition("=")
        opts[k] = v or "1"
    if opts and not m.group("base").startswith("hope"):
        raise UserError(f"model {spec!r}: options in [...] are only for Hope variants")
    return m.group("base"), opts


def hope_config(spec: str, base: HopeConfig) -> HopeConfig:
    """The HopeConfig a Hope spec stands for."""
    name, opts = parse_spec(spec)
    if "no-ret-calib" in opts and {"ret-calib", "ret-calib-hl"} & set(opts):
        raise UserError(f"{spec}: no-ret-calib switches the calibration off, ret-calib options set it: pick one")
    cfg = base
    if name == "hope-no-cms":
        cfg = cfg.with_(cms_periods=(), cms_lr=())
    if name == "hope-frozen":  # nothing learns online, the return calibration included
        cfg = cfg.with_(write_memories=False, learn_cms=False, ret_calib=False)
    for k, v in opts.items():
        if k == "opt":
            from learner.optim import LEVEL_OPTIMIZERS

            if v not in LEVEL_OPTIMIZERS:
                raise UserError(f"{spec}: opt={v} unknown; known: {', '.join(LEVEL_OPTIMIZERS)}")
            cfg = cfg.with_(cms_optimizer=v)
        elif k == "no-dgd":
            cfg = cfg.with_(dgd=False)
        elif k == "no-momentum":
            cfg = cfg.with_(momentum=0.0)
        elif k == "no-selfmod":
            cfg = cfg.with_(self_modifying=False)
        elif k == "no-writes":  # attribution: the memories never write online, the CMS levels still step
            cfg = cfg.with_(write_memories=False)
        elif k == "no-cms-online":  # attribution: the CMS levels never step online, the memories still write
            cfg = cfg.with_(learn_cms=False)
        elif k == "ret-calib":  # the return outputs' online shrinkage toward zero; ret-calib=N: a prior of N bars
            cfg = cfg.with_(ret_calib=True, **({} if v == "1" else {"ret_calib_prior": float(v)}))
        elif k == "no-ret-calib":  # the raw return outputs (the calibration off); same pre-trained net
            cfg = cfg.with_(ret_calib=False)
        elif k == "ret-calib-hl":  # its evidence's half-life in bars
            cfg = cfg.with_(ret_calib=True, ret_calib_halflife=float(v))
        elif k == "levels":
            n = int(v)
            cfg = cfg.with_(cms_periods=base.cms_periods[:n], cms_lr=base.cms_lr[:n])
        elif k == "lowest-period":
            p = int(v)
            periods = tuple(x for x in cfg.cms_periods if x < p) + (p,)
            lrs = tuple(cfg.cms_lr[: len(periods) - 1]) + (cfg.cms_lr[min(len(periods) - 1, len(cfg.cms_lr) - 1)],)
            cfg = cfg.with_(cms_periods=periods, cms_lr=lrs)
        elif k == "cms-lr":  # e.g. cms-lr=0.001:0.0003:0.0001, one per level
            lrs = tuple(float(x) for x in v.split(":"))
            cfg = cfg.with_(cms_lr=lrs + lrs[-1:] * (len(cfg.cms_periods) - len(lrs)))
        elif k == "periods":  # e.g. periods=8:24:168:720
            ps = tuple(int(x) for x in v.split(":"))
            lrs = tuple(cfg.cms_lr) + (cfg.cms_lr[-1],) * max(0, len(ps) - len(cfg.cms_lr))
            cfg = cfg.with_(cms_periods=ps, cms_lr=lrs[: len(ps)])
        elif k == "chunk":
            c = int(v)
            cfg = cfg.with_(chunk_other=c, chunk_mem=c)
        else:
            raise UserError(
                f"{spec}: unknown option {k!r} (opt=, no-dgd, no-momentum, no-selfmod, no-writes, no-cms-online, "
                "ret-calib[=N], no-ret-calib, ret-calib-hl=, levels=, lowest-period=, chunk=)"
            )
    return cfg


def is_seeded(spec: str) -> bool:
    """Whether a run of ``spec`` depends on a seed (Hope's pre-training, the neural baselines' init and fit);
    the classical baselines are deterministic, so one run of them stands for every seed."""
    name, _ = parse_spec(spec)
    return name.startswith("hope") or name in NEURAL


# knobs that change only what the model does online, never what pre-training learns
ONLINE_ONLY = ("write_memories", "learn_cms", "ret_calib", "ret_calib_prior", "ret_calib_halflife", "ret_calib_period")


def deployed_config(cfg: HopeConfig) -> HopeConfig:
    """``cfg`` with its online-only knobs at their defaults: the config a pre-trained net is built and saved with,
    whichever spec asked for it first, so a net saved by `evaluate` after ``hope-frozen`` pre-trained it still
    learns online (and calibrates its returns) when `learn` or `demo` load it."""
    default = HopeConfig()
    return cfg.with_(**{k: getattr(default, k) for k in ONLINE_ONLY})


def pretrain_key(cfg: HopeConfig) -> tuple:
    """Configs that differ only in online behaviour share one pre-trained net."""
    return tuple(sorted(deployed_config(cfg).to_dict().items()))


@dataclass
class Built:
    model: OnlineModel
    needs_history_fit: bool  # call fit_history on the pre-training window

    @property
    def warm_up_only(self) -> bool:
        """Pre-trained or fitted models stream only a warm-up before the cut; classical ones all history."""
        return self.needs_history_fit or isinstance(self.model, Hope)


def build_model(
    spec: str,
    n_features: int,
    names: list[str],
    base: HopeConfig,
    pretrained: Callable[[HopeConfig], HopeNet] | None,
    device: str = "cpu",
    pretrain_steps: int = 300,
    seed: int = 0,
) -> Built:
    """Instantiate ``spec``. ``pretrained(cfg)`` returns the (cached) meta-learned net for a Hope config;
    ``seed`` seeds a neural baseline's initialisation and history fit (Hope's seed is its pre-training's)."""
    name, _ = parse_spec(spec)
    if name.startswith("hope"):
        cfg = hope_config(spec, base)
        net = pretrained(cfg) if pretrained is not None else None
        return Built(Hope(cfg, net=net, device=device, name=spec), False)
    cls = BASELINES[name]
    kw = {"pretrain_steps": pretrain_steps, "seed": seed} if name in NEURAL else {}
    model = cls(n_features, names, **kw)
    model.name = spec
    return Built(model, hasattr(model, "pretrain_steps"))


def load_hope(pretrained: str | None, device: str = "cpu") -> Hope:
    """Hope with the meta-weights of a ``continuum pretrain`` checkpoint, or untrained (seed 0) without one."""
    import torch

    if pretrained:
        from learner.checkpoint import load_pretrained

        net, _meta = load_pretrained(pretrained)
        return Hope(net.cfg, net, device=device)
    torch.manual_seed(0)
    cfg = HopeConfig()
    return Hope(cfg, HopeNet(cfg), device=device)
