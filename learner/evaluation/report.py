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


def write_json(doc: dict, out: Path) -> Path:
    p = out / "evaluation.json"
    p.write_text(json.dumps(doc, indent=1, allow_nan=False))
    return p


def write_report(doc: dict, out: Path, command: str, wall_s: float) -> Path:
    models = doc["models"]
    best = {
        k: (min if k in ("ret_1h_mse", "ret_24h_mse", "vol_24h_qlike") else max)(
            (m for m in models if models[m]["cumulative"][k] is not None),
            key=lambda m, k=k: models[m]["cumulative"][k],
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
        "## Cumulative (all streamed bars)",
        "",
        "| model | " + " | ".join(LABELS[k] for k in KEYS) + " | BWT | avg forgetting | stream-steps/s |",
        "|---" * (len(KEYS) + 4) + "|",
    ]
    for m, r in models.items():
        cells = []
        for k in KEYS:
            s = _fmt(k, r["cumulative"][k])
            cells.append(f"**{s}**" if best[k] == m else s)
        f = r["forgetting"]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {_fmt('x', f['bwt'])} | {_fmt('x', f['avg_forgetting'])} | "
            f"{r['steps_per_s']:.0f} |"
        )
    lines += ["", "## Volatility QLIKE per regime", ""]
    regimes = [r["name"] for r in doc["regimes"]]
    marked = {r["name"] for r in doc["regimes"] if r.get("in_pretraining")}
    shown = [g for g in regimes if any(g in models[m]["per_regime"] for m in models)]
    lines.append("| model | " + " | ".join(shown) + " |")
    lines.append("|---" * (len(shown) + 1) + "|")
    for m, r in models.items():
        lines.append(
            f"| {m} | " + " | ".join(_fmt("q", r["per_regime"].get(g, {}).get("vol_24h_qlike")) for g in shown) + " |"
        )
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
    lines += ["", "Plots: `cumulative_error.png`, `forgetting_matrices.png`, `per_regime.png`, `switches.png`.", ""]
    p = out / "report.md"
    p.write_text("\n".join(lines))
    return p


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
