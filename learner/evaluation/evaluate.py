"""One evaluation run (DESIGN §5): every model through the same protocol, then evaluation.json, plots, report.

``continuum evaluate`` (commands/evaluate.py) loads the data and calls :func:`run_evaluation`; the
protocol itself is :mod:`learner.evaluation.harness`.

With ``seeds`` > 1 every learning model (Hope variants, neural baselines: :func:`learner.models.is_seeded`)
runs once per seed ``seed, seed+1, ...`` (pre-training seed, neural init/fit seed); the held-out weeks are
the same for every seed (the setup is made once). The deterministic classical models run once. A model's
block keeps its keys from the first seed's run and gains ``seeds`` (mean, std, values over the runs).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from continuum.jsonsafe import jsonsafe
from learner.checkpoint import save_pretrained
from learner.evaluation import report
from learner.evaluation.harness import NEW_ASSET_WINDOWS, Setup, across_seeds, evaluate_model, summarise_run
from learner.evaluation.regimes import Regime
from learner.features import FeaturePanel
from learner.hope.config import HopeConfig
from learner.models import is_seeded, pretrain_key
from learner.pipeline import PretrainCache
from learner.pretrain import PretrainConfig


def run_evaluation(
    fp: FeaturePanel,
    setup: Setup,
    regimes: tuple[Regime, ...],
    specs: list[str],
    until: datetime,
    out: Path,
    *,
    seed: int,
    pretrain_steps: int,
    device: str = "cpu",
    progress: bool = True,
    command: str = "continuum evaluate",
    seeds: int = 1,
    started: float | None = None,
) -> dict:
    """Evaluate ``specs`` on ``setup``; write every output into ``out``; return evaluation.json's document.

    ``seeds``: runs per learning model (seeds ``seed`` .. ``seed + seeds - 1``). ``started``: the
    ``time.perf_counter()`` the command started at, so ``wall_seconds`` includes loading the data."""
    from tqdm import tqdm

    t_wall = time.perf_counter() if started is None else started
    panel_symbols = fp.symbols
    base = HopeConfig(n_features=fp.x.shape[2])
    caches: dict[int, PretrainCache] = {}  # one per seed: the nets of seed k are pre-trained with seed + k

    def cache_for(k: int) -> PretrainCache:
        if k not in caches:
            pcfg = PretrainConfig(steps=pretrain_steps, seed=seed + k)
            caches[k] = PretrainCache(fp, setup.cut, pcfg, progress=progress, skip=setup.skip, device=device)
        return caches[k]

    out.mkdir(parents=True, exist_ok=True)
    doc_models, bar_q, frames = {}, {}, []
    n_stream = len(fp.times) - setup.cut
    for spec in specs:
        ks = list(range(seeds)) if is_seeded(spec) else [0]
        blocks = []
        for k in ks:
            desc = f"{spec:>20}" + (f" s{seed + k}" if len(ks) > 1 else "")
            bar = tqdm(total=n_stream, desc=desc, unit="bar", disable=not progress, file=sys.stderr)
            run_ = evaluate_model(
                spec,
                setup,
                base,
                cache_for(k),
                progress=bar.update,
                pretrain_steps=pretrain_steps,
                device=device,
                seed=seed + k,
            )
            bar.close()
            block, q, se = summarise_run(run_, setup)
            blocks.append(block)
            if k:
                continue
            bar_q[spec] = q  # the series, plots and tables of single numbers are the first seed's
            frames.append(pl.DataFrame({"ts": fp.times, "model": spec, "vol_24h_qlike": q, "ret_1h_se": se}))
            if spec == "hope" and run_.activity:
                act = {k_: np.nanmean(v, axis=1) for k_, v in run_.activity.items()}
                pl.DataFrame({"ts": fp.times, **act}).slice(setup.cut).write_parquet(out / "hope_activity.parquet")
        summary = across_seeds(blocks, [seed + k for k in ks])
        doc_models[spec] = {**blocks[0], "seeds": {**summary, "deterministic": not is_seeded(spec)}}
    new_assets = [fp.symbols[j] for j in setup.new]
    for i, (key, net) in enumerate(cache_for(0).nets.items()):  # meta-learned nets, reusable by `demo`/`learn`
        name = "hope_pretrained.pt" if key == pretrain_key(base) else f"pretrained_{i}.pt"  # configs inside
        meta = {"until": until.isoformat(), "symbols": [s for s in panel_symbols if s not in new_assets]}
        save_pretrained(out / name, net, meta)  # the first seed's nets
    iso = [str(t.astype("datetime64[ms]")) + "Z" for t in (fp.times[0], fp.times[-1])]
    doc = {
        "data": {
            "symbols": panel_symbols,
            "start": iso[0],
            "end": iso[1],
            "pretrain_until": until.isoformat(),
            "new_assets": new_assets,
        },
        "regimes": [
            {**r.to_dict(), "in_pretraining": b <= setup.cut} for r, (_, b) in zip(regimes, setup.bounds, strict=True)
        ],
        "models": doc_models,
        # the contract: new_assets.<model>.first_30d / .first_90d (also inside each model's block)
        "new_assets": {m: b["new_assets"] for m, b in doc_models.items() if "new_assets" in b},
        "protocol": {
            "chunk": setup.chunk,
            "seed": seed,
            "held_out_weeks": {
                r.name: [str(fp.times[a].astype("datetime64[ms]")) for a, _ in w]
                for r, w in zip(regimes, setup.weeks, strict=True)
            },
            "features": fp.names,
            "hope_config": base.to_dict(),
            "pretrain_steps": pretrain_steps,
            "seeds": [seed + k for k in range(seeds)],
            "new_assets": {
                "symbols": new_assets,
                "windows": {
                    w: [iso_bar(fp, setup.cut), iso_bar(fp, min(len(fp.times), setup.cut + n) - 1)]
                    for w, n in NEW_ASSET_WINDOWS.items()
                }
                if new_assets
                else {},
            },
        },
    }
    pl.concat(frames).with_columns(
        pl.col("vol_24h_qlike").fill_nan(None), pl.col("ret_1h_se").fill_nan(None)
    ).write_parquet(out / "errors.parquet")
    doc = jsonsafe(doc)
    report.write_plots(doc, fp.times, bar_q, out, setup.cut)
    doc["wall_seconds"] = time.perf_counter() - t_wall  # all but writing evaluation.json and report.md
    report.write_json(doc, out)
    report.write_report(doc, out, command, doc["wall_seconds"])
    return doc


def iso_bar(fp: FeaturePanel, i: int) -> str:
    return str(fp.times[i].astype("datetime64[ms]")) + "Z"


def streamed_evaluation(
    fp: FeaturePanel,
    preds: np.ndarray,
    cut: int,
    regimes: tuple[Regime, ...],
    name: str,
    until: datetime,
    steps_per_s: float,
) -> tuple[dict, pl.DataFrame]:
    """evaluation.json's document and errors.parquet for one streamed run (``continuum demo``): the prequential
    errors of ``preds`` (T, B, 3, volatility units) from ``cut`` on — cumulative, per regime, switch dynamics —
    beside the naive reference of :func:`metrics.forecast_quality` under ``reference``. Nothing was held out,
    so ``forgetting`` has no R matrix (``continuum evaluate`` scores held-out weeks)."""
    from learner.evaluation import metrics as M
    from learner.protocol import HOURS_24, to_raw

    T = len(fp.times)
    ok = fp.ymask.copy() & np.isfinite(preds)
    ok[:cut] = False
    raw = to_raw(np.nan_to_num(preds), fp.sigma)
    naive = raw.copy()
    naive[..., :2] = 0.0
    naive[..., 2] = HOURS_24 * fp.sigma**2
    rows_all = np.zeros(T, dtype=bool)
    rows_all[cut:] = True
    bounds = [
        (
            int(np.searchsorted(fp.times, int(r.start.timestamp() * 1000))),
            int(np.searchsorted(fp.times, int(r.end.timestamp() * 1000))),
        )
        for r in regimes
    ]
    shown = [i for i, (a, b) in enumerate(bounds) if b > cut and a < T]  # regimes the streamed bars touch
    blocks, frames = {}, []
    for label, forecast, scored in ((name, raw, True), ("naive", naive, False)):
        errs = M.per_bar(forecast, fp.y, ok)
        ic = M.rank_ic(forecast[..., 1], fp.y[..., 1], ok[..., 1]) if scored else np.zeros(T)
        per_regime = {}
        for i in shown:
            rows = rows_all.copy()
            rows[: bounds[i][0]] = False
            rows[bounds[i][1] :] = False
            if rows.any():
                per_regime[regimes[i].name] = M.summarise(errs, ic, rows)
        with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
            sup.filter(RuntimeWarning)
            bar_q, bar_se = np.nanmean(errs["qlike"], axis=1), np.nanmean(errs["se_1h"], axis=1)
        switches = []
        for i in shown:
            a, b = bounds[i]
            if a >= cut - 24:  # a switch the stream went through
                peak, rec = M.switch_dynamics(bar_q, max(a, cut), b)
                switches.append({"regime": regimes[i].name, "peak_error": peak, "recovery_hours": rec})
        blocks[label] = {
            "cumulative": M.summarise(errs, ic, rows_all),
            "per_regime": per_regime,
            "forgetting": {"metric": "vol_24h_qlike", "R": [], "bwt": None, "avg_forgetting": None},
            "switches": switches,
        }
        label_out = label if scored else f"{label} (reference)"
        frames.append(pl.DataFrame({"ts": fp.times, "model": label_out, "vol_24h_qlike": bar_q, "ret_1h_se": bar_se}))
    doc = {
        "data": {
            "symbols": fp.symbols,
            "start": iso_bar(fp, cut),
            "end": iso_bar(fp, T - 1),
            "pretrain_until": until.isoformat(),
        },
        "regimes": [regimes[i].to_dict() for i in shown],
        "models": {name: {**blocks[name], "steps_per_s": steps_per_s}},
        # zero return; next day's variance = 24 x the slow hourly scale ("tomorrow looks like last week")
        "reference": {"naive": blocks["naive"]},
        "protocol": {
            "kind": "streamed",
            "held_out_weeks": {},
            "note": "continuum demo: every bar streamed, none held out",
        },
    }
    errors = (
        pl.concat(frames)
        .filter(pl.col("ts") >= int(fp.times[cut]))
        .with_columns(pl.col("vol_24h_qlike").fill_nan(None), pl.col("ret_1h_se").fill_nan(None))
    )
    return jsonsafe(doc), errors
