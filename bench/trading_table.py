"""One table from several ``continuum backtest --out`` folders: each strategy's figures per model, mean ± std
over the seeds given (issue 13's validation: the same rules driven by Hope, gru_online and har).

    python bench/trading_table.py hope=out/v_hope_s0,out/v_hope_s1,out/v_hope_s2 har=out/v_har \\
        --strategies buy_and_hold,vol_target_long,mv_partial_long,mv_band_long

Reads each folder's backtest.json; prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KEYS = (("sharpe", "Sharpe", "{:+.2f}"), ("max_drawdown", "max DD", "{:.1%}"), ("return", "return", "{:+.1%}"))
KEYS += (("turnover", "turnover/d", "{:.2f}"), ("psr", "PSR", "{:.2f}"), ("dsr", "DSR", "{:.2f}"))


def cell(values: list[float | None], fmt: str) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "—"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1)).lstrip('+')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="model=DIR[,DIR...] (one DIR per seed)")
    ap.add_argument("--strategies", default=None, help="comma-separated (default: all in the first file)")
    args = ap.parse_args()
    docs: dict[str, list[dict]] = {}
    for spec in args.runs:
        model, _, dirs = spec.partition("=")
        docs[model] = [json.loads((Path(d) / "backtest.json").read_text()) for d in dirs.split(",")]
    first = next(iter(docs.values()))[0]
    names = args.strategies.split(",") if args.strategies else list(first["strategies"])
    print(f"trials: n = {first['trials']['n']}, Sharpe std {first['trials']['total']['sharpe_std']:.2f}, "
          f"expected max Sharpe by luck {first['trials']['total']['expected_max_sharpe']:.2f}")  # fmt: skip
    print("| strategy | model | seeds | " + " | ".join(h for _, h, _ in KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for name in names:
        for model, runs in docs.items():
            tot = [r["strategies"][name]["total"] for r in runs if name in r["strategies"]]
            if not tot:
                continue
            cells = [cell([t.get(k) for t in tot], f) for k, _, f in KEYS]
            print(f"| {name} | {model} | {len(tot)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
