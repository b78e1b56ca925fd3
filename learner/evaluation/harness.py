"""The evaluation protocol of DESIGN §5, the same for every model.

1. Held-out weeks: a seeded set of whole weeks inside each regime is never streamed to any model
   (not in pre-training either); the stream sees them as gaps and no target spanning them is released.
2. Pre-training / warm-up on bars before ``pretrain_until``: Hope meta-learns (``learner.pretrain``),
   neural baselines fit the same window, classical models stream through it.
3. Prequential stream from ``pretrain_until`` to the end: predict, then learn each target once its
   horizon has passed (``learner.stream``). No regime label reaches a model.
4. After each regime a deep copy of the model is scored on the held-out weeks of every regime
   (R[i][j]); scoring streams the copy over the week with learning off, so the live state is untouched.
5. New assets (``continuum evaluate --new-assets``): their bars before the cut are removed from the panel
   *before* features are built (:func:`listed_at_cut`), so they are listed at the cut: absent from
   pre-training, history fits, the warm-up and the cross-asset features, and their own features start from
   nothing after the cut, as a fresh listing's would. They are scored apart on their first 30 and 90 days.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from continuum.errors import UserError
from continuum.panel import OHLCV, Panel
from learner.evaluation import metrics as M
from learner.evaluation.regimes import Regime
from learner.features import FeaturePanel
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.models import build_model
from learner.pipeline import cut_index, fit_on_history, warm_start
from learner.protocol import OnlineModel, to_raw
from learner.stream import release_mask, run_stream

WEEK = 168
SCORE_WARMUP = 48  # bars streamed before a held-out week so recurrent state belongs to its context
NEW_ASSET_WINDOWS = {"first_30d": 720, "first_90d": 2160}  # bars after the cut a new asset is scored on


@dataclass
class Setup:
    fp: FeaturePanel
    regimes: tuple[Regime, ...]
    bounds: list[tuple[int, int]]  # bar range [a, b) of each regime
    cut: int  # first streamed bar
    skip: np.ndarray  # (T,) held-out bars
    weeks: list[list[tuple[int, int]]]  # per regime, held-out [a, b) bar ranges
    chunk: int = 8
    new: tuple[int, ...] = ()  # columns of the assets listed at the cut (``--new-assets``)

    @property
    def streamed(self) -> list[int]:
        """Regimes that end after the cut (their rows of R come from streaming)."""
        return [i for i, (_, b) in enumerate(self.bounds) if b > self.cut and b > self.bounds[i][0]]


def listed_at_cut(panel: Panel, symbols: Sequence[str], pretrain_until_ms: int, chunk: int = 8) -> Panel:
    """The panel with ``symbols``' bars before the cut removed, as if they were listed at the cut.

    Build the features from this panel (not from the full one): then no bar, target or cross-asset mean of
    a new asset reaches pre-training, a history fit or the warm-up, and its own features after the cut
    start from nothing (the volatility scale and the 168h return need their windows filled first).
    """
    unknown = [s for s in symbols if s not in panel.symbols]
    if unknown:
        raise UserError(
            f"--new-assets: {unknown[0]} is not in the data (loaded: {', '.join(panel.symbols)}); add it to --symbols"
        )
    if set(panel.symbols) <= set(symbols):
        raise UserError("--new-assets names every symbol; at least one must be known before the cut")
    cut = cut_index(panel.times, pretrain_until_ms, chunk)
    cols = [panel.symbols.index(s) for s in symbols]
    ohlcv = np.stack([getattr(panel, a) for a in OHLCV])  # (5, T, B), a copy
    ohlcv[:, :cut, cols] = np.nan
    first = panel.listing_ts()
    for j in cols:
        first[j] = int(panel.times[min(cut, len(panel.times) - 1)])
    return Panel.from_ohlcv(panel.symbols, panel.timeframe, panel.times, ohlcv, first)


def make_setup(
    fp: FeaturePanel,
    regimes: tuple[Regime, ...],
    pretrain_until_ms: int,
    seed: int = 7,
    weeks_per_regime: int = 2,
    chunk: int = 8,
    new_assets: Sequence[str] = (),
) -> Setup:
    """The protocol's fixed parts: the cut, the regimes' bar ranges, the seeded held-out weeks.
    ``new_assets``: symbols of ``fp`` built from :func:`listed_at_cut` (checked: no usable bar before the cut)."""
    T = len(fp.times)
    cut = cut_index(fp.times, pretrain_until_ms, chunk)
    new = tuple(fp.symbols.index(s) for s in new_assets)
    if new and (fp.mask[:cut, list(new)].any() or fp.ymask[:cut, list(new)].any()):
        raise ValueError("new assets have bars before the cut: build the features from listed_at_cut(panel, ...)")
    bounds = [
        (
            int(np.searchsorted(fp.times, int(r.start.timestamp() * 1000))),
            int(np.searchsorted(fp.times, int(r.end.timestamp() * 1000))),
        )
        for r in regimes
    ]
    rng = np.random.default_rng(seed)
    skip = np.zeros(T, dtype=bool)
    weeks: list[list[tuple[int, int]]] = []
    for a, b in bounds:
        lo, hi = a + WEEK, b - WEEK - 24  # not the regime's first week (switch dynamics), nor its tail
        cands = [
            s for s in range(lo - lo % chunk + chunk, max(lo, hi), WEEK) if fp.mask[s : s + WEEK].any(1).mean() > 0.9
        ]
        picks = sorted(rng.choice(cands, size=min(weeks_per_regime, len(cands)), replace=False)) if cands else []
        weeks.append([(int(s), int(s) + WEEK) for s in picks])
        for s, e in weeks[-1]:
            skip[s:e] = True
    return Setup(fp, regimes, bounds, cut, skip, weeks, chunk, new)


@dataclass
class ModelRun:
    name: str
    preds: np.ndarray  # (T,B,3) volatility units, NaN where not streamed
    R: list[list[float | None]]
    seconds: float  # streaming from the cut (predict + learn), scoring excluded
    stream_steps: int
    pretrain_seconds: float = 0.0  # pre-training (Hope, first user of a net) or history fit (neural baselines)
    activity: dict[str, np.ndarray] = field(default_factory=dict)
    warmup_seconds: float = 0.0  # streaming the warm-up before the cut
    score_seconds: float = 0.0  # scoring copies on the held-out weeks (R)
    total_seconds: float = 0.0  # the whole evaluate_model call
    seed: int = 0


def _score(snapshot: OnlineModel, setup: Setup, j: int, clock: int) -> float | None:
    """Mean vol QLIKE of a frozen copy on regime j's held-out weeks (learning off, copy discarded)."""
    fp = setup.fp
    errs = []
    for a, b in setup.weeks[j]:
        m = copy.deepcopy(snapshot)
        ws = max(0, a - SCORE_WARMUP)
        res = run_stream(m, fp, start=ws, end=b, chunk=setup.chunk, learn=False, clock0=ws - clock)
        raw = to_raw(res.preds[a:b], fp.sigma[a:b])
        ok = fp.ymask[a:b] & np.isfinite(res.preds[a:b])
        q = M.per_bar(raw, fp.y[a:b], ok)["qlike"]
        errs.append(q[np.isfinite(q)])
    allv = np.concatenate(errs) if errs else np.array([])
    return float(allv.mean()) if allv.size else None


def evaluate_model(
    spec: str,
    setup: Setup,
    base: HopeConfig,
    cache: Callable[[HopeConfig], HopeNet],
    progress: Callable[[int], None] | None = None,
    pretrain_steps: int = 300,
    device: str = "cpu",
    seed: int = 0,
) -> ModelRun:
    """Run ``spec`` through the protocol. ``seed`` seeds a neural baseline (Hope's seed is ``cache``'s)."""
    t_total = time.perf_counter()
    fp = setup.fp
    T, B, F = fp.x.shape
    t_pre = cache.seconds
    built = build_model(spec, F, fp.names, base, cache, device=device, pretrain_steps=pretrain_steps, seed=seed)
    model = built.model
    t_fit = time.perf_counter()
    fit_on_history(built, fp, setup.cut, setup.skip)
    fit_seconds = time.perf_counter() - t_fit + (cache.seconds - t_pre)
    t_warm = time.perf_counter()
    w0 = warm_start(built, fp, setup.cut, setup.chunk, setup.skip, fit=False)
    warmup_seconds = time.perf_counter() - t_warm
    score_seconds = 0.0
    n_reg = len(setup.regimes)
    R: list[list[float | None]] = [[None] * n_reg for _ in range(n_reg)]
    preds = np.full((T, B, 3), np.nan, dtype=np.float32)
    activity: dict[str, np.ndarray] = {}

    def score_row(i: int, snap: OnlineModel, bar: int) -> None:
        nonlocal score_seconds
        t = time.perf_counter()
        for j in range(n_reg):
            R[i][j] = _score(snap, setup, j, bar - w0)
        score_seconds += time.perf_counter() - t

    # rows of regimes that ended inside pre-training: the state after pre-training and warm-up
    pre_rows = [i for i, (_, b) in enumerate(setup.bounds) if b <= setup.cut and b > setup.bounds[i][0]]
    if pre_rows:
        score_row(pre_rows[0], copy.deepcopy(model), setup.cut)
        for i in pre_rows[1:]:
            R[i] = list(R[pre_rows[0]])
    seconds, s = 0.0, setup.cut
    for i in setup.streamed:
        e = min(T, math.ceil(setup.bounds[i][1] / setup.chunk) * setup.chunk)
        if e <= s:
            continue

        def tick(a: int, b: int, _p: np.ndarray) -> None:
            if progress:
                progress(b - a)

        res = run_stream(
            model,
            fp,
            start=s,
            end=e,
            chunk=setup.chunk,
            skip=setup.skip,
            clock0=w0,
            on_chunk=tick,
            record_activity=spec == "hope" or "ret-calib" in spec,
        )
        seconds += res.seconds
        preds[s:e] = res.preds[s:e]
        for k, v in res.activity.items():
            activity.setdefault(k, np.zeros((T, B), dtype=np.float32))[s:e] = v[s:e]
        score_row(i, copy.deepcopy(model), e)
        s = e
    live = fp.mask[setup.cut :] & ~setup.skip[setup.cut :, None]
    return ModelRun(
        spec,
        preds,
        R,
        seconds,
        int(live.sum()),
        fit_seconds,
        activity,
        warmup_seconds=warmup_seconds,
        score_seconds=score_seconds,
        total_seconds=time.perf_counter() - t_total,
        seed=seed,
    )


def summarise_run(run: ModelRun, setup: Setup) -> tuple[dict, np.ndarray, np.ndarray]:
    """evaluation.json's block for one model, plus per-bar cross-asset mean errors (qlike, se_1h)."""
    fp = setup.fp
    T = len(fp.times)
    ok = release_mask(fp, setup.skip) & np.isfinite(run.preds)
    ok[: setup.cut] = False
    raw = to_raw(np.nan_to_num(run.preds), fp.sigma)
    errs = M.per_bar(raw, fp.y, ok)
    ic = M.rank_ic(raw[..., 1], fp.y[..., 1], ok[..., 1])
    rows_all = np.zeros(T, dtype=bool)
    rows_all[setup.cut :] = True
    per_regime = {}
    for r, (a, b) in zip(setup.regimes, setup.bounds, strict=True):
        rows = rows_all.copy()
        rows[:a] = False
        rows[b:] = False
        if rows.any():
            per_regime[r.name] = M.summarise(errs, ic, rows)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        bar_q = np.nanmean(errs["qlike"], axis=1)
        bar_se = np.nanmean(errs["se_1h"], axis=1)
    switches = []
    for i in setup.streamed:
        a, b = setup.bounds[i]
        if a < setup.cut - 24:
            continue
        peak, rec = M.switch_dynamics(bar_q, max(a, setup.cut), b)
        switches.append({"regime": setup.regimes[i].name, "peak_error": peak, "recovery_hours": rec})
    bwt, fg = M.forgetting(run.R, [i for i in range(len(setup.regimes)) if run.R[i][i] is not None])
    block = {
        "cumulative": M.summarise(errs, ic, rows_all),
        "per_regime": per_regime,
        "forgetting": {"metric": "vol_24h_qlike", "R": run.R, "bwt": bwt, "avg_forgetting": fg},
        "switches": switches,
        "steps_per_s": run.stream_steps / max(run.seconds, 1e-9),
        "pretrain_seconds": run.pretrain_seconds,
        "fit_seconds": run.pretrain_seconds,
        "warmup_seconds": run.warmup_seconds,
        "stream_seconds": run.seconds,
        "score_seconds": run.score_seconds,
        "total_seconds": run.total_seconds,
    }
    if setup.new:
        block["new_assets"] = _new_asset_block(raw, ok, setup)
    return block, bar_q, bar_se


def _new_asset_block(raw: np.ndarray, ok: np.ndarray, setup: Setup) -> dict:
    """The metrics of ``cumulative`` on the new assets only, over their first 30 / 90 days after the cut.
    The rank IC is cross-sectional among the new assets (None with fewer than 3 of them)."""
    fp, new = setup.fp, list(setup.new)
    errs = M.per_bar(raw[:, new], fp.y[:, new], ok[:, new])
    ic = M.rank_ic(raw[:, new, 1], fp.y[:, new, 1], ok[:, new, 1])
    out = {}
    for name, n in NEW_ASSET_WINDOWS.items():
        rows = np.zeros(len(fp.times), dtype=bool)
        rows[setup.cut : setup.cut + n] = True
        m = M.summarise(errs, ic, rows)
        if not np.isfinite(ic[rows]).any():
            m["rank_ic_24h"] = None
        out[name] = m
    return out


def spread(values: list[float | None]) -> dict:
    """``{"mean", "std", "values"}`` over the runs of one model (None values are left out of mean and std;
    std is the sample std, ddof=1, and 0 for a single value)."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return {"mean": None, "std": None, "values": list(values)}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "values": list(values)}


def across_seeds(blocks: list[dict], seeds: list[int]) -> dict:
    """The ``seeds`` block of a model: mean, std and values of every metric over its runs (one per seed)."""

    def metrics(get: Callable[[dict], dict | None]) -> dict:
        first = get(blocks[0]) or {}
        return {k: spread([(get(b) or {}).get(k) for b in blocks]) for k in first}

    out = {
        "n": len(blocks),
        "seed_values": list(seeds),
        "cumulative": metrics(lambda b: b["cumulative"]),
        "per_regime": {g: metrics(lambda b, g=g: b["per_regime"].get(g)) for g in blocks[0]["per_regime"]},
        "forgetting": {k: spread([b["forgetting"][k] for b in blocks]) for k in ("bwt", "avg_forgetting")},
        "total_seconds": float(sum(b["total_seconds"] for b in blocks)),
    }
    if "new_assets" in blocks[0]:
        out["new_assets"] = {w: metrics(lambda b, w=w: b["new_assets"][w]) for w in blocks[0]["new_assets"]}
    return out
