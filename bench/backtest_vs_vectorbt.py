"""Our backtest engine against vectorbt on the same job: wall time, and whether the equity agrees.

The job: a random-walk close matrix (T bars x B assets, seeded, no gaps) and long-only target weights
(a slow random walk, gross exposure <= 0.9 so vectorbt's cash never runs short), re-set every bar
("hourly") or once a day ("daily", NaN = keep holding in between), 12 bps per unit of traded notional.
Ours is ``strategies.backtest.run_backtest`` (no rebalance band: vectorbt has none); vectorbt's is
``Portfolio.from_orders`` with ``size_type="targetpercent"``, ``fees=0.0012``, one cash pool
(``cash_sharing``, ``call_seq="auto"``: sells before buys), and its equity curve ``pf.value()``, which is
what ours returns too. The last bar's targets are NaN so neither trades there and the final equity
compares like for like: fee-free the two must agree to rounding.

vectorbt compiles its numba kernels on first use: that one-off time is reported apart ("vbt compile").
Then the two engines run in turns (ours, vectorbt, ours, ...) ``--repeats`` times each, so both see the same
load on a shared machine, and each one's median is reported (its fastest too, in the JSON). Nothing here
asserts a time.

vectorbt is not a dependency of Continuum: if it is not importable, this script installs what it needs
beyond this environment into ``--vbt-dir`` (default ``~/.cache/continuum/bench-vectorbt``) and puts that at
the end of ``sys.path`` for itself; the environment is not changed.

    python bench/backtest_vs_vectorbt.py [--sizes 8x50000,32x50000,100x50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from strategies.backtest import run_backtest  # noqa: E402

HOUR = 3_600_000
FEE = 0.0012  # 10 bps fee + 2 bps slippage, as one rate per unit of traded notional
INIT_CASH = 1e6
JOBS = {"hourly": 1, "daily": 24}  # targets re-set every bar / once a day (NaN = keep holding between)


def import_vectorbt(where: Path):
    """vectorbt; if this environment lacks it, installed into ``where`` first, leaving the environment as is.

    pip resolves vectorbt against what is installed here (``--dry-run --report``), and only the
    distributions it would add are installed into ``where`` with ``--target --no-deps``. ``where`` goes at
    the end of ``sys.path``, so the environment's own numpy, pandas, ... still win. (``pip install
    --prefix`` is no substitute: it uninstalls from the environment any package it upgrades.)
    """
    try:
        import vectorbt as vbt

        return vbt
    except ImportError:
        pass
    if not (where / "vectorbt").is_dir():
        print(f"installing vectorbt into {where} (for this bench only) ...", file=sys.stderr)
        report = where.parent / "vectorbt-resolve.json"
        where.parent.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--dry-run", "--report", str(report), "vectorbt"], check=True)
        wanted = [
            f"{d['metadata']['name']}=={d['metadata']['version']}" for d in json.loads(report.read_text())["install"]
        ]
        have = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
        missing = [w for w in wanted if w.split("==")[0].lower() not in have]
        subprocess.run([*pip, "--no-deps", "--target", str(where), *missing], check=True)
    sys.path.append(str(where))
    import vectorbt as vbt

    return vbt


def job(n_assets: int, n_bars: int, every: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, close, target): seeded random-walk prices and long-only target weights set every ``every`` bars.

    The weights wander slowly (a random walk reflected into [0, 0.9 / B]): each re-set trades a little, as a
    strategy re-sized to forecasts does, and costs stay a fraction of equity rather than all of it. Between
    re-sets the target is NaN: no order, the book drifts with prices (both engines keep the holding).
    """
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (n_bars, n_assets)), axis=0))
    steps = rng.normal(0.0, 0.02, (n_bars, n_assets))
    u = np.abs(((np.cumsum(steps, axis=0) + 0.5) % 2.0) - 1.0)  # reflected walk in [0, 1]
    target = 0.9 * u / n_assets
    target[np.arange(n_bars) % every != 0] = np.nan
    target[-1] = np.nan  # no trade on the last bar (ours never trades it: there is no next close)
    times = np.arange(n_bars, dtype=np.int64) * HOUR
    return times, close, target


def in_turns(fns: list, repeats: int) -> tuple[list[list[float]], list[object]]:
    """Wall times (one list per function) and last outputs of ``fns`` called in turns, ``repeats`` rounds.

    Taking turns rather than one engine's runs after the other's puts both under the same background load,
    which on a shared machine moves by more than the difference being measured.
    """
    times: list[list[float]] = [[] for _ in fns]
    outs: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return times, outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8x50000,32x50000,100x50000", help="comma-separated ASSETSxBARS")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vbt-dir", default=str(Path.home() / ".cache" / "continuum" / "bench-vectorbt"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "backtest_vs_vectorbt.json"))
    args = ap.parse_args()
    import pandas as pd

    vbt = import_vectorbt(Path(args.vbt_dir))

    def ours(times, close, target, rate):
        return run_backtest(times, close, target, 0, fee_bps=rate * 1e4, slippage_bps=0.0).equity

    def theirs(close_df, target_df, rate):
        # init_cash 1e6, not 1: vectorbt skips orders below a size tolerance, which a 1-dollar book hits
        pf = vbt.Portfolio.from_orders(
            close_df,
            size=target_df,
            size_type="targetpercent",
            fees=rate,
            init_cash=INIT_CASH,
            cash_sharing=True,
            group_by=True,
            call_seq="auto",
            freq="1h",
        )
        return pf.value().to_numpy() / INIT_CASH

    t0 = time.perf_counter()
    times, close, target = job(2, 50)
    idx = pd.date_range("2020-01-01", periods=50, freq="h")
    theirs(pd.DataFrame(close, index=idx), pd.DataFrame(target, index=idx), FEE)
    compile_s = time.perf_counter() - t0

    rows = []
    for size in args.sizes.split(","):
        n_assets, n_bars = (int(x) for x in size.lower().split("x"))
        for label, every in JOBS.items():
            times, close, target = job(n_assets, n_bars, every)
            idx = pd.date_range("2020-01-01", periods=n_bars, freq="h")
            close_df, target_df = pd.DataFrame(close, index=idx), pd.DataFrame(target, index=idx)
            (ts_ours, ts_vbt), (eq_ours, eq_vbt) = in_turns(
                [lambda: ours(times, close, target, FEE), lambda: theirs(close_df, target_df, FEE)],  # noqa: B023
                args.repeats,
            )
            t_ours, t_vbt = float(np.median(ts_ours)), float(np.median(ts_vbt))
            # Fee-free, the two are the same computation: equity must agree to rounding. With fees they differ
            # in the second order (vectorbt sizes a target on equity before the fee, ours after it).
            free = abs(ours(times, close, target, 0.0)[-1] / theirs(close_df, target_df, 0.0)[-1] - 1.0)
            rows.append(
                {
                    "assets": n_assets,
                    "bars": n_bars,
                    "targets": label,
                    "ours_s": round(t_ours, 4),  # median of --repeats runs
                    "vectorbt_s": round(t_vbt, 4),
                    "ours_best_s": round(min(ts_ours), 4),
                    "vectorbt_best_s": round(min(ts_vbt), 4),
                    "ours_over_vectorbt": round(t_ours / t_vbt, 2),
                    "final_equity_ours": float(eq_ours[-1]),
                    "final_equity_vectorbt": float(eq_vbt[-1]),
                    "rel_diff_with_fees": float(abs(eq_ours[-1] / eq_vbt[-1] - 1.0)),
                    "rel_diff_fee_free": float(free),
                }
            )
    head = (
        f"{'assets':>6} {'bars':>7} {'targets':>7} {'ours s':>8} {'vbt s':>8} {'ours/vbt':>8} {'equity':>9} "
        f"{'diff fees':>9} {'diff free':>9}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['assets']:>6} {r['bars']:>7} {r['targets']:>7} {r['ours_s']:>8.3f} {r['vectorbt_s']:>8.3f} "
            f"{r['ours_over_vectorbt']:>8.2f} {r['final_equity_ours']:>9.4f} {r['rel_diff_with_fees']:>9.1e} "
            f"{r['rel_diff_fee_free']:>9.1e}"
        )
    print(f"vectorbt {vbt.__version__}: first call (numba compile) {compile_s:.1f} s, not in the table")
    doc = {
        "rows": rows,
        "vectorbt": vbt.__version__,
        "numpy": np.__version__,
        "vectorbt_compile_s": round(compile_s, 2),
        "repeats": args.repeats,
        "load_avg_1min": round(os.getloadavg()[0], 2),  # the machine was shared if this is well above 0
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "command": "python bench/backtest_vs_vectorbt.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
