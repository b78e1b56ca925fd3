"""The one pipeline from history to a live stream: build -> fit on history -> reset -> warm up -> stream.

``continuum evaluate``, ``continuum backtest`` and ``continuum demo`` all start a model here, so the
rules hold everywhere and cannot drift apart again:

- the cut is the first bar at or after ``--pretrain-until``, rounded *down* to the call length, so no bar
  at or after that date is ever used to fit (:func:`cut_index`);
- models fitted offline (the neural baselines) see only bars before the cut, and only targets realised
  before it (a 24h target made at bar t is known at t+24: the last 24 bars' targets are blanked), with
  held-out bars masked (:func:`fit_on_history`);
- before the cut, pre-trained and fitted models stream the last ``WARMUP_BARS`` bars with learning on, so
  their fast state belongs to its context; classical models stream all history from bar 0 (their state is
  their estimate) (:func:`warm_start`);
- from the cut on, :func:`learner.stream.run_stream` streams prequentially, with the same clock.

The live service streams bar by bar through the same :func:`learner.stream.run_stream`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np

from learner.features import MAX_HORIZON, FeaturePanel
from learner.hope.config import HopeConfig
from learner.hope.model import HopeNet
from learner.models import Built, build_model, deployed_config, pretrain_key
from learner.pretrain import PretrainConfig, pretrain
from learner.stream import StreamResult, masked, run_stream

WARMUP_BARS = 720  # bars of context streamed (with learning) before the cut by pre-trained/fitted models


def cut_index(times: np.ndarray, until_ms: int, chunk: int) -> int:
    """First bar at or after ``until_ms``, rounded down to a multiple of ``chunk``."""
    return int(np.searchsorted(times, until_ms)) // chunk * chunk


class PretrainCache:
    """One meta-learned net per architecture, pre-trained on bars before the cut with held-out bars masked.

    ``build_model`` asks it for a Hope config's net; configs that differ only in online behaviour
    (``hope``, ``hope-frozen``) share one (``learner.models.pretrain_key``). Every caller gets a copy.
    ``device``: where pre-training runs and the nets stay (the models stream on the same device).
    """

    def __init__(
        self,
        fp: FeaturePanel,
        cut: int,
        pcfg: PretrainConfig,
        progress: bool,
        skip: np.ndarray | None = None,
        device: str = "cpu",
    ):
        self.fp = fp if skip is None else masked(fp, skip)
        self.cut, self.pcfg, self.progress, self.device = cut, pcfg, progress, device
        self.nets: dict[tuple, HopeNet] = {}
        self.seconds = 0.0

    def __call__(self, cfg: HopeConfig) -> HopeNet:
        key = pretrain_key(cfg)
        if key not in self.nets:
            t = time.perf_counter()
            net, _ = pretrain(
                deployed_config(cfg),
                self.fp,
                self.cut,
                self.pcfg,
                progress=self.progress,
                device=self.device,
            )
            self.seconds += time.perf_counter() - t
            self.nets[key] = net
        return copy.deepcopy(self.nets[key])


def fit_on_history(built: Built, fp: FeaturePanel, cut: int, skip: np.ndarray | None = None) -> None:
    """Offline fit on bars [0, cut) with only the targets realised before the cut (no-op for most models)."""
    if not built.needs_history_fit:
        return
    hist = fp.slice(0, cut)
    if skip is not None:
        hist = masked(hist, skip[:cut])
    released = hist.ymask.copy()
    released[max(0, cut - MAX_HORIZON) :] = False  # their targets lie at or after the cut
    built.model.fit_history(hist.x, hist.mask, hist.y_norm().astype(np.float32), released)


def warm_start(
    built: Built,
    fp: FeaturePanel,
    cut: int,
    chunk: int = 8,
    skip: np.ndarray | None = None,
    warmup: int = WARMUP_BARS,
    fit: bool = True,
) -> int:
    """Fit on history (unless ``fit=False``: done and timed by the caller), reset to one stream per asset,
    stream the warm-up bars before ``cut``.

    Returns ``clock0``, the bar the model's own clock 0 stands for: pass it to every later
    :func:`~learner.stream.run_stream` call so chunk and CMS period boundaries continue seamlessly.
    """
    if fit:
        fit_on_history(built, fp, cut, skip)
    built.model.reset(fp.x.shape[1])
    w0 = max(0, cut - warmup) if built.warm_up_only else 0
    w0 = cut - (cut - w0) // chunk * chunk
    run_stream(built.model, fp, start=w0, end=cut, chunk=chunk, skip=skip, clock0=w0)
    return w0


def check_cut(cut: int, n_bars: int, what: str = "--pretrain-until") -> None:
    """At least a month of history before the cut and two weeks after it, or one clear line."""
    from continuum.errors import UserError

    if cut >= n_bars - 24 * 14:
        raise UserError(f"{what} leaves less than two weeks to stream; pick an earlier date")
    if cut < 24 * 30:
        raise UserError(f"{what} leaves less than a month of history to pre-train on; pick a later date")


def stream_from_cut(
    spec: str,
    fp: FeaturePanel,
    cut: int,
    pretrained: Callable[[HopeConfig], HopeNet] | None,
    *,
    base: HopeConfig | None = None,
    chunk: int = 8,
    device: str = "cpu",
    pretrain_steps: int = 300,
    on_chunk: Callable[[int, int, np.ndarray], None] | None = None,
    record_activity: bool = False,
    seed: int = 0,
) -> StreamResult:
    """Model ``spec`` as it would have run live: built, started at ``cut`` (:func:`warm_start`), then
    streamed prequentially to the end. Forecasts before the cut are NaN (the warm-up's are not signals).
    ``seed`` seeds a neural baseline's initialisation and history fit (Hope's is ``pretrained``'s)."""
    base = base or HopeConfig(n_features=fp.x.shape[2])
    built = build_model(
        spec, fp.x.shape[2], fp.names, base, pretrained, device=device, pretrain_steps=pretrain_steps, seed=seed
    )
    w0 = warm_start(built, fp, cut, chunk)
    res = run_stream(
        built.model, fp, start=cut, chunk=chunk, clock0=w0, on_chunk=on_chunk, record_activity=record_activity
    )
    res.preds[:cut] = np.nan
    return res
