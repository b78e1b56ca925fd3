"""Every knob of Hope, one comment each. Choices where the paper is silent are marked CHOICE."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

# Knobs a checkpoint saved before they existed was trained without (see HopeConfig.from_dict).
LEGACY = {
    "anchor_memories": False,
    "norm_values": False,
    "learn_cms_lr": False,
    "learn_gate_range": False,
    "ret_calib": False,
}


@dataclass(frozen=True)
class HopeConfig:
    n_features: int = 18  # input features per bar (learner.features)
    n_outputs: int = 3  # z_ret_1h, z_ret_24h, log_var_24h
    d_model: int = 32  # width of the residual stream and of every memory's input
    d_hidden: int = 32  # hidden width of the residual-MLP memories (NL eq. 89)
    conv_window: int = 4  # causal depthwise convolution before the memories (NL §8, "window 4")
    # Initialisation (meta-learned from there). CHOICE: the conv starts as the identity on the current bar and the
    # k, v memories near the identity (eq. 89's skip, small W1), so at init k_t ~ v_t and a write stores almost
    # nothing and mixes no neighbour: recall tasks sit on that saddle (bench/passkey.py, docs/results.md)
    conv_init_std: float = 0.0  # std of Gaussian noise added to every conv tap at init (0: the identity alone)
    kv_init_std: float = 0.02  # std of the k and v memories' initial W1 (how far k, v start from x and each other)
    chunk_other: int = 8  # C_oth: write period of the k, v, eta, alpha memories (NL §8.2)
    chunk_mem: int = 8  # C_mem: write period of the main memory; a multiple of chunk_other
    eta_max: float = 0.05  # CHOICE: eta_t = eta_max * sigmoid(.) bounds the inner learning rate
    alpha_min: float = 0.9  # CHOICE: alpha_t in [alpha_min, 1]: retention gate (1 = no decay)
    momentum: float = 0.9  # CHOICE: constant beta of the heavy-ball inner momentum S (Table 6 ablates it; eqs. omit it)
    inner_clip: float = 1.0  # soft-clamp of each token's inner-gradient norm (stability, pitfalls §4.1)
    dgd: bool = True  # DGD projector (alpha I - eta k k^T) on W2; False = alpha-decay + GD there too
    self_modifying: bool = True  # k, v, eta, alpha memories write themselves; False = static projections
    # CHOICE: detach v_hat from the outer graph (inner grads treat it as constant anyway). True leaves the value
    # memory without any outer gradient (it acts only through v_hat), so it never meta-learns: off since issue 12
    stopgrad_vhat: bool = False
    cms_periods: tuple[int, ...] = (24, 168, 720)  # C_l per level, in bars (day, week, month)
    cms_hidden: int = 64  # hidden width of each CMS MLP level
    cms_lr: tuple[float, ...] = (3e-4, 1e-4, 3e-5)  # eta^(l) (times a learned scale); validation split, results.md
    cms_clip: float = 1.0  # max norm of one level's applied update (C-KM's CMSBlock.grad_clip)
    cms_optimizer: str = "sgd"  # how a level turns its gradient sum into a step (learner.optim)
    write_memories: bool = True  # False: memories never write (the frozen-after-pretraining baseline)
    learn_cms: bool = True  # False: CMS levels never update online
    # CHOICE: weights of ret_1h, ret_24h, vol_24h in the *online* CMS loss (pre-training weighs all 1).
    # Hourly returns are mostly noise: full weight lets the fast levels chase it (measured in docs/results.md).
    loss_weights: tuple[float, float, float] = (0.25, 0.25, 1.0)
    # Long-stream health (issue 12; pitfalls §4.9), chosen on the validation split (docs/results.md).
    # Checkpoints saved before these knobs existed load with them off (LEGACY).
    anchor_memories: bool = True  # retention pulls every write back toward the meta-learned initial memory
    norm_values: bool = True  # v_t L2-normalised like k_t, so targets and errors are O(1) whatever W grows to
    learn_cms_lr: bool = True  # per-level log-scale of eta^(l) is a meta-parameter (pre-training learns it)
    # The gate ranges eta_max and alpha_min as meta-parameters (issue 12): pre-training learns them from the values
    # above, through a parameterisation that keeps 0 < eta_max < alpha_min < 1 (SelfModifyingTitans.gate_range).
    # Off: better on the validation split (PretrainConfig.gate_range_lr_mult 10), but the shipped net re-pre-trained
    # with it failed the long-stream health bound (docs/results.md)
    learn_gate_range: bool = False
    # Return calibration (issue 12; learner/hope/calibration.py): the return outputs are multiplied by an online
    # ridge estimate c in [0, 1] fitted on released targets only, with a prior at c = 0 worth ``ret_calib_prior``
    # bars, so it starts as the zero forecast and moves off it only as evidence accumulates. Vol is untouched.
    # Online only (pre-training never sees it); on since issue 12 (validation split, docs/results.md)
    ret_calib: bool = True
    ret_calib_prior: float = 2160.0  # CHOICE: prior strength in bars of every stream (90 days)
    ret_calib_halflife: float = 2160.0  # bars; the evidence's half-life (90 days; 0: never forgotten)
    ret_calib_period: int = 24  # bars; c is refreshed at multiples of this on the clock (daily)
    # Execution (issue 14): the memories' matrix products in lower precision, "fp32" (off), "bf16" (autocast; CPU
    # and GPU) or "tf32" (NVIDIA GPUs). Their state, momenta, gates and every CMS level stay fp32 (memory.py)
    mem_precision: str = "fp32"
    extra: dict = field(default_factory=dict, compare=False, hash=False)  # free-form notes, not used

    def __post_init__(self) -> None:
        if self.chunk_mem % self.chunk_other:
            raise ValueError("chunk_mem must be a multiple of chunk_other")
        if len(self.cms_lr) < len(self.cms_periods):
            object.__setattr__(
                self, "cms_lr", tuple(self.cms_lr) + (self.cms_lr[-1],) * (len(self.cms_periods) - len(self.cms_lr))
            )
        for p in self.cms_periods:
            if p % self.chunk_mem:
                raise ValueError(f"CMS period {p} must be a multiple of chunk_mem {self.chunk_mem}")
        if self.mem_precision not in ("fp32", "bf16", "tf32"):
            raise ValueError(f"mem_precision {self.mem_precision!r}: use fp32, bf16 or tf32")
        if not 0 < self.eta_max <= self.alpha_min <= 1:
            raise ValueError("need 0 < eta_max <= alpha_min <= 1 so alpha I - eta k k^T stays a contraction")
        if self.learn_gate_range and not self.eta_max < self.alpha_min < 1:
            raise ValueError("learn_gate_range needs eta_max < alpha_min < 1 (its logits are finite there)")
        if self.ret_calib_prior < 0 or self.ret_calib_halflife < 0 or self.ret_calib_period < 1:
            raise ValueError("need ret_calib_prior >= 0, ret_calib_halflife >= 0, ret_calib_period >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HopeConfig:
        """A saved config. Knobs added after it was saved take the value that reproduces how it was trained
        (``LEGACY``), not today's default."""
        names = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**{**{k: v for k, v in LEGACY.items() if k not in clean}, **clean})

    def with_(self, **kw) -> HopeConfig:
        return replace(self, **kw)
