"""One evaluation run (DESIGN §5): every model through the same protocol, then evaluation.json, plots, report.

``continuum evaluate`` (commands/evaluate.py) loads the data and calls :func:`run_evaluation`; the
protocol itself is :mod:`learner.evaluation.harness`.
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
from learner.evaluation.harness import Setup, evaluate_model, summarise_run
from learner.evaluation.regimes import Regime
from learner.features import FeaturePanel
from learner.hope.config import HopeConfig
from learner.models import pretrain_key
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
) -> dict:
    """Evaluate ``specs`` on ``setup``; write every output into ``out``; return evaluation.json's document."""
    from tqdm import tqdm

    t_wall = time.perf_counter()
    panel_symbols = fp.symbols
    base = HopeConfig(n_features=fp.x.shape[2])
    pcfg = PretrainConfig(steps=pretrain_steps, seed=seed)
    cache = PretrainCache(fp, setup.cut, pcfg, progress=progress, skip=setup.skip)
    out.mkdir(parents=True, exist_ok=True)
    doc_models, bar_q, frames = {}, {}, []
    n_stream = len(fp.times) - setup.cut
    for spec in specs:
        bar = tqdm(total=n_stream, desc=f"{spec:>20}", unit="bar", disable=not progress, file=sys.stderr)
        run_ = evaluate_model(
            spec, setup, base, cache, progress=bar.update, pretrain_steps=pretrain_steps, device=device
        )
        bar.close()
        block, q, se = summarise_run(run_, setup)
        doc_models[spec] = block
        bar_q[spec] = q
        frames.append(pl.DataFrame({"ts": fp.times, "model": spec, "vol_24h_qlike": q, "ret_1h_se": se}))
        if spec == "hope" and run_.activity:
            act = {k: np.nanmean(v, axis=1) for k, v in run_.activity.items()}
            pl.DataFrame({"ts": fp.times, **act}).slice(setup.cut).write_parquet(out / "hope_activity.parquet")
    for i, (key, net) in enumerate(cache.nets.items()):  # meta-learned nets, reusable by `demo`/`learn`
        name = "hope_pretrained.pt" if key == pretrain_key(base) else f"pretrained_{i}.pt"  # configs inside
        save_pretrained(out / name, net, {"until": until.isoformat(), "symbols": panel_symbols})
    iso = [str(t.astype("datetime64[ms]")) + "Z" for t in (fp.times[0], fp.times[-1])]
    doc = {
        "data": {"symbols": panel_symbols, "start": iso[0], "end": iso[1], "pretrain_until": until.isoformat()},
        "regimes": [
            {**r.to_dict(), "in_pretraining": b <= setup.cut} for r, (_, b) in zip(regimes, setup.bounds, strict=True)
        ],
        "models": doc_models,
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
        },
    }
    doc = jsonsafe(doc)
    report.write_json(doc, out)
    pl.concat(frames).with_columns(
        pl.col("vol_24h_qlike").fill_nan(None), pl.col("ret_1h_se").fill_nan(None)
    ).write_parquet(out / "errors.parquet")
    report.write_plots(doc, fp.times, bar_q, out, setup.cut)
    wall = time.perf_counter() - t_wall
    report.write_report(doc, out, command, wall)
    return doc
