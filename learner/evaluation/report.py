"""evaluation.json, report.md and the PNG plots of ``continuum evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from learner.evaluation.metrics import KEYS, rolling

LABELS = {
    "ret_1h_mse": "ret 1h MSE (bp²)",
    "ret_24h_mse": "ret 24h MSE (bp²)",
    "vol_24h_qlike": "vol 24h QLIKE",
    "hit_rate_1h": "hit rate 1h",
    "rank_ic_24h": "rank IC 24h",
}
SCALE = {"ret_1h_mse": 1e8, "ret_24h_mse": 1e8}  # squared log-returns in basis points squared


def _fmt(k: str, v: float | None) -> str:
    if v is None:
        return "–"
    v = v * SCALE.get(k, 1.0)
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def _pm(k: str, st: dict | None) -> str:
    """``mean ± std`` of a ``seeds`` entry ({"mean", "std", "values"}); the mean alone for a single run."""
    if not st or st.get("mean") is None:
        return "–"
    if len([v for v in st["values"] if v is not None]) < 2:
        return _fmt(k, st["mean"])
    m, s = st["mean"] * SCALE.get(k, 1.0), st["std"] * SCALE.get(k, 1.0)
    f = "{:.4f}" if abs(m) < 100 else "{:.1f}"  # the std in the mean's precision
    return f"{f.format(m)} ± {f.format(s)}"


def _n_seeds(doc: dict) -> int:
    return len(doc.get("protocol", {}).get("seeds", [])) or 1


def write_json(doc: dict, out: Path) -> Path:
    p = out / "evaluation.json"
    p.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return p


def write_report(doc: dict, out: Path, command: str, wall_s: float) -> Path:
    models = doc["models"]
    n_seeds = _n_seeds(doc)
    multi = n_seeds > 1

    def value(m: str, k: str) -> float | None:  # what a cell shows: the mean over seeds, or the one run's
        if multi and "seeds" in models[m]:
            return models[m]["seeds"]["cumulative"][k]["mean"]
        return models[m]["cumulative"][k]

    best = {
        k: (min if k in ("ret_1h_mse", "ret_24h_mse", "vol_24h_qlike") else max)(
            (m for m in models if value(m, k) is not None),
            key=lambda m, k=k: value(m, k),
            default=None,
        )
        for k in KEYS
    }
    lines = [
        "# Continual-learning evaluation",
        "",
        f"Command: `{command}`  ",
        f"Data: {', '.join(doc['data']['symbols'])}, {doc['data']['start'][:10]} → {doc['data']['end'][:10]}; "
        f"pre-training until {doc['data']['pretrain_until'][:10]}. Wall time {wall_s / 60:.1f} min.",
        "",
        "Prequential and task-free: every model predicts each bar, then learns each target once its horizon "
        "has passed; no regime label reaches any model. Held-out weeks are never streamed. **Bold** = best.",
        "",
    ]
    if multi:
        seeds = doc["protocol"]["seeds"]
        det = [m for m in models if models[m].get("seeds", {}).get("deterministic")]
        lines += [
            f"**{n_seeds} seeds** ({', '.join(str(x) for x in seeds)}): every learning model was pre-trained and run "
            "once per seed (pre-training seed, neural baselines' initialisation); the held-out weeks are the same "
            "for every seed. Cells are mean ± sample std (ddof=1) over the seeds. "
            + (f"Deterministic classical models ({', '.join(det)}) ran once: they show a single value. " if det else "")
            + "A difference between two models is only claimed where it exceeds 2 std.",
            "",
        ]
    lines += [
        "## Cumulative (all streamed bars)",
        "",
        "| model | " + " | ".join(LABELS[k] for k in KEYS) + " | BWT | avg forgetting | stream-steps/s |",
        "|---" * (len(KEYS) + 4) + "|",
    ]
    for m, r in models.items():
        cells = []
        sd = r.get("seeds") if multi else None
        for k in KEYS:
            s = _pm(k, sd["cumulative"][k]) if sd else _fmt(k, r["cumulative"][k])
            cells.append(f"**{s}**" if best[k] == m else s)
        f = r["forgetting"]
        if sd:
            fcells = f"{_pm('x', sd['forgetting']['bwt'])} | {_pm('x', sd['forgetting']['avg_forgetting'])}"
        else:
            fcells = f"{_fmt('x', f['bwt'])} | {_fmt('x', f['avg_forgetting'])}"
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {fcells} | {r['steps_per_s']:.0f} |")
    if doc["data"].get("new_assets"):
        new = doc["data"]["new_assets"]
        wins = doc["protocol"]["new_assets"]["windows"]
        lines += [
            "",
            f"## New assets ({', '.join(new)}), listed at the cut",
            "",
            "Their bars before the cut were removed before features were built: no model saw them in pre-training, "
            "a history fit or the warm-up, and their features start from nothing at the cut (the first week has no "
            "forecast while the volatility scale and the 168h return fill). Scored on their own bars only"
            + ("; rank IC needs 3 new assets" if len(new) < 3 else "")
            + ".",
            "",
        ]
        for w, (a, b) in wins.items():
            lines += [
                f"**{w}** ({a[:10]} → {b[:10]})  ",
                "| model | " + " | ".join(LABELS[k] for k in KEYS) + " |",
                "|---" * (len(KEYS) + 1) + "|",
            ]
            for m, r in models.items():
                sd = r.get("seeds") if multi else None
                cells = [_pm(k, sd["new_assets"][w][k]) if sd else _fmt(k, r["new_assets"][w][k]) for k in KEYS]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["", "## Volatility QLIKE per regime", ""]
    regimes = [r["name"] for r in doc["regimes"]]
    marked = {r["name"] for r in doc["regimes"] if r.get("in_pretraining")}
    shown = [g for g in regimes if any(g in models[m]["per_regime"] for m in models)]
    lines.append("| model | " + " | ".join(shown) + " |")
    lines.append("|---" * (len(shown) + 1) + "|")
    for m, r in models.items():
        sd = r.get("seeds") if multi else None
        if sd:
            cells = [_pm("q", sd["per_regime"].get(g, {}).get("vol_24h_qlike")) for g in shown]
        else:
            cells = [_fmt("q", r["per_regime"].get(g, {}).get("vol_24h_qlike")) for g in shown]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Forgetting matrices (vol QLIKE of the state after row-regime on held-out weeks of column-regime)",
        "",
    ]
    if marked:
        lines.append(
            f"Rows of regimes inside pre-training ({', '.join(sorted(marked))}) are the state after "
            "pre-training and warm-up."
        )
        lines.append("")
    for m, r in models.items():
        R = r["forgetting"]["R"]
        lines.append(f"**{m}**  ")
        lines.append("| after \\ on | " + " | ".join(regimes) + " |")
        lines.append("|---" * (len(regimes) + 1) + "|")
        for i, row in enumerate(R):
            if all(v is None for v in row):
                continue
            lines.append(f"| {regimes[i]} | " + " | ".join(_fmt("q", v) for v in row) + " |")
        lines.append("")
    lines += [
        "## Regime switches (rolling 7-day vol QLIKE)",
        "",
        "| model | "
        + " | ".join(f"{s['regime']} peak / recovery h" for s in next(iter(models.values()))["switches"])
        + " |",
        "|---" * (len(next(iter(models.values()))["switches"]) + 1) + "|",
    ]
    for m, r in models.items():
        lines.append(
            f"| {m} | "
            + " | ".join(
                f"{_fmt('q', s['peak_error'])} / {'never' if s['recovery_hours'] is None else int(s['recovery_hours'])}"
                for s in r["switches"]
            )
            + " |"
        )
    lines += _cost_lines(doc, wall_s)
    if multi:
        lines.append("Forgetting matrices, regime switches, plots and `errors.parquet` are the first seed's runs.")
    lines += ["", "Plots: `cumulative_error.png`, `forgetting_matrices.png`, `per_regime.png`, `switches.png`.", ""]
    p = out / "report.md"
    p.write_text("\n".join(lines))
    return p


def _cost_lines(doc: dict, wall_s: float) -> list[str]:
    """Where the time went, per model (first seed's run; all seeds' total)."""
    models = doc["models"]
    lines = [
        "",
        "## Cost (seconds)",
        "",
        f"Whole run {wall_s:.0f} s ({wall_s / 60:.1f} min). Fit = pre-training (Hope; paid by the first model "
        "that uses a net) or the history fit (neural baselines); stream = predict + learn from the cut; "
        "score = the held-out-week copies (R).",
        "",
        "| model | runs | fit | warm-up | stream | score | total, one run | total, all runs |",
        "|---" * 8 + "|",
    ]
    for m, r in models.items():
        sd = r.get("seeds", {})
        lines.append(
            f"| {m} | {sd.get('n', 1)} | {r.get('fit_seconds', 0):.1f} | {r.get('warmup_seconds', 0):.1f} | "
            f"{r.get('stream_seconds', 0):.1f} | {r.get('score_seconds', 0):.1f} | {r.get('total_seconds', 0):.1f} | "
            f"{sd.get('total_seconds', r.get('total_seconds', 0)):.1f} |"
        )
    lines.append("")
    return lines


def write_plots(doc: dict, times: np.ndarray, bar_q: dict[str, np.ndarray], out: Path, cut: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dates = times.astype("datetime64[ms]")
    regimes = doc["regimes"]
    models = list(doc["models"])
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    paths = []

    def bands(ax):
        for i, r in enumerate(regimes):
            ax.axvspan(
                np.datetime64(r["start"][:19]), np.datetime64(r["end"][:19]), color="grey", alpha=0.08 if i % 2 else 0.0
            )
            ax.text(
                np.datetime64(r["start"][:19]),
                1.0,
                r["name"],
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                va="top",
                rotation=0,
                color="dimgray",
                clip_on=True,  # regimes before the streamed range get no label outside the axes
            )

    # 1. cumulative error over time
    fig, ax = plt.subplots(figsize=(12, 5))
    for k, m in enumerate(models):
        q = bar_q[m][cut:]
        c = np.nancumsum(np.nan_to_num(q)) / np.maximum(np.cumsum(np.isfinite(q)), 1)
        ax.plot(dates[cut:], c, label=m, color=colors[k % 10], lw=2.2 if m == "hope" else 1.1)
    bands(ax)
    ax.set_xlim(dates[cut], dates[-1])
    settled = [np.nanmax(ln.get_ydata()[24 * 60 :]) for ln in ax.get_lines() if len(ln.get_ydata()) > 24 * 90]
    if settled:  # the first weeks of a prequential mean are noise; scale to where the curves settle
        ax.set_ylim(bottom=0, top=1.1 * float(np.nanmax(settled)))
    ax.set_ylabel("cumulative mean vol-24h QLIKE")
    ax.set_title("Prequential error over time (lower is better)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    paths.append(out / "cumulative_error.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 2. R matrices side by side
    n = len(models)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    allv = [v for m in models for row in doc["models"][m]["forgetting"]["R"] for v in row if v is not None]
    # colour scale over the bulk of the values, so one very poor model does not wash the others out
    vmin, vmax = (float(np.percentile(allv, 2)), float(np.percentile(allv, 90))) if allv else (0, 1)
    for k, m in enumerate(models):
        ax = axes[k // cols][k % cols]
        R = np.array([[np.nan if v is None else v for v in row] for row in doc["models"][m]["forgetting"]["R"]])
        im = ax.imshow(R, vmin=vmin, vmax=vmax, cmap="viridis_r")
        ax.set_title(m, fontsize=9)
        ax.set_xticks(range(len(regimes)), [r["name"][:9] for r in regimes], rotation=90, fontsize=6)
        ax.set_yticks(range(len(regimes)), [r["name"][:9] for r in regimes], fontsize=6)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.colorbar(im, ax=axes, shrink=0.6, label="vol QLIKE (row: after regime, col: held-out weeks of)")
    paths.append(out / "forgetting_matrices.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 3. per-regime bars
    names = [r["name"] for r in regimes if any(r["name"] in doc["models"][m]["per_regime"] for m in models)]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    w = 0.8 / max(1, n)
    for k, m in enumerate(models):
        vals = [doc["models"][m]["per_regime"].get(g, {}).get("vol_24h_qlike") or np.nan for g in names]
        ax.bar(np.arange(len(names)) + k * w, vals, w, label=m, color=colors[k % 10])
    ax.set_xticks(np.arange(len(names)) + 0.4 - w / 2, names, fontsize=8)
    ax.set_ylabel("vol-24h QLIKE")
    ax.set_title("Error per regime")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    paths.append(out / "per_regime.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 4. error around each switch
    starts = [np.datetime64(r["start"][:19]) for r in regimes]
    idx = [int(np.searchsorted(dates, s)) for s in starts]
    idx = [i for i in idx if cut <= i < len(dates)]
    if idx:
        fig, axes = plt.subplots(1, len(idx), figsize=(3.6 * len(idx), 3.4), squeeze=False)
        for a, i in zip(axes[0], idx, strict=False):
            lo, hi = max(cut, i - 30 * 24), min(len(dates), i + 60 * 24)
            for k, m in enumerate(models):
                a.plot(
                    (np.arange(lo, hi) - i) / 24,
                    rolling(bar_q[m], 168)[lo:hi],
                    color=colors[k % 10],
                    lw=2 if m == "hope" else 0.9,
                    label=m,
                )
            a.axvline(0, color="k", lw=0.8)
            a.set_title(str(dates[i])[:10], fontsize=9)
            a.set_xlabel("days from switch")
        axes[0][0].set_ylabel("rolling 7d vol QLIKE")
        axes[0][-1].legend(fontsize=6)
        fig.tight_layout()
        paths.append(out / "switches.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_forecasts(fp, preds: np.ndarray, activity: dict[str, np.ndarray], cut: int, path: Path, name: str) -> None:
    """Price, forecast vs realised next-day volatility, and weekly mean memory activity after ``cut`` (BTC when
    present, else the first asset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from learner.protocol import to_raw

    j = fp.symbols.index("BTC/USDT") if "BTC/USDT" in fp.symbols else 0
    t = fp.times[cut:].astype("datetime64[ms]")
    raw = to_raw(np.nan_to_num(preds[cut:]), fp.sigma[cut:])
    fig, ax = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
    ax[0].plot(t, fp.close[cut:, j], lw=0.7, color="black")
    ax[0].set_yscale("log")
    ax[0].set_title(f"{fp.symbols[j]} close")
    real = np.where(fp.ymask[cut:, j, 2], np.sqrt(fp.y[cut:, j, 2]), np.nan)
    ax[1].plot(t, real, lw=0.4, color="grey", label="realised next-day vol")
    ax[1].plot(t, np.sqrt(raw[:, j, 2]), lw=0.8, color="C0", label=f"{name} forecast")
    ax[1].set_yscale("log")
    ax[1].legend(fontsize=8)
    ax[1].set_title("next-day volatility: forecast at each bar vs. what happened")
    for k, v in activity.items():
        if k.endswith("update_norm"):
            s = np.nanmean(v[cut:], axis=1)
            ax[2].plot(t, np.convolve(s, np.ones(168) / 168, mode="same"), lw=0.8, label=k)
    ax[2].set_yscale("symlog", linthresh=1e-4)
    ax[2].legend(fontsize=7, ncol=4)
    ax[2].set_title("memory activity (weekly mean update norms per level)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
