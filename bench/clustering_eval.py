"""Precision and recall of the deposit-address heuristic (forensics/clusters.py) on planted scenarios.

The scenario (tests/services/deposit_scenario.py) has known deposit addresses and confounders. Measured:

1. the full-size plan (seed 7: 120 customers, 10 of each confounder) played as real transactions on anvil and
   read back from the lake after the chain backfill, at the default parameters: confusion counts, precision,
   recall, which negatives were called deposits, and pairwise user-linking precision/recall;
2. the same at the defaults over five seeds (straight from the plan: the anvil run shows the two agree);
3. a sensitivity table over the window and the tolerance (seed 7, from the plan).

    python bench/clustering_eval.py [--out bench/results/clustering.json] [--no-anvil]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forensics.clusters import ClusterParams, clusters  # noqa: E402
from tests.services import deposit_scenario as ds  # noqa: E402

WINDOWS = {"1h": 1, "6h": 6, "12h": 12, "24h": 24, "3d": 72, "7d": 168, "11d": 264}
TOLERANCES = (0.001, 0.01, 0.05, 0.2, 0.5, 0.75)


def _row(sc: ds.Score) -> dict:
    return {
        "tp": sc.tp,
        "fp": sc.fp,
        "fn": sc.fn,
        "tn": sc.tn,
        "precision": round(sc.precision, 4),
        "recall": round(sc.recall, 4),
        "wrong_exchange": sc.wrong_exchange,
        "negatives_called_deposits": dict(sorted(sc.flagged_by_role.items())),
        "user_pairs": {"tp": sc.pair_tp, "fp": sc.pair_fp, "fn": sc.pair_fn},
        "user_pair_precision": round(sc.pair_precision, 4),
        "user_pair_recall": round(sc.pair_recall, 4),
    }


def on_anvil(s: ds.DepositScenario) -> dict:
    from continuum.lake import Lake
    from ingest.chain import Rpc, backfill
    from tests.services.anvil import anvil

    with anvil(*ds.ANVIL_ARGS) as node, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ds.play_on_anvil(s, node.url)
        played = time.perf_counter() - t
        rpc = Rpc(node.url)
        lake = Lake(Path(tmp) / "lake")
        backfill(rpc, 0, rpc.head(), lake=lake, confirmations=0)
        t = time.perf_counter()
        table = clusters(lake)
        took = time.perf_counter() - t
        same = table.equals(clusters(ds.to_frame(s)))
        n = lake.read("transfer").height
    return {"transfers": n, "play_s": round(played, 1), "clusters_s": round(took, 3), "same_as_plan": same,
            **_row(ds.score(table, s))}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "clustering.json")
    p.add_argument("--no-anvil", action="store_true", help="skip the anvil run")
    a = p.parse_args()
    res: dict = {"machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"}
    s = ds.build(seed=7)
    frame = ds.to_frame(s)
    res["scenario"] = {
        "seed": 7,
        "transfers": frame.height,
        "roles": dict(sorted(s.truth.group_by("role").len().iter_rows())),
        "hot_wallets": s.hot,
    }
    if not a.no_anvil:
        res["anvil_defaults"] = on_anvil(s)
        print("anvil, defaults:", json.dumps(res["anvil_defaults"]))
    res["seeds_defaults"] = {}
    for seed in (7, 8, 9, 10, 11):
        sd = ds.build(seed=seed)
        fr = ds.to_frame(sd)
        res["seeds_defaults"][seed] = _row(ds.score(clusters(fr), sd, fr))
        print(f"seed {seed}:", json.dumps(res["seeds_defaults"][seed]))
    grid = []
    for wname, hours in WINDOWS.items():
        for tol in TOLERANCES:
            sc = ds.score(clusters(frame, ClusterParams(window=timedelta(hours=hours), tolerance=tol)), s, frame)
            grid.append({"window": wname, "tolerance": tol, **_row(sc)})
    res["sensitivity"] = grid
    print("\nwindow  tol     P      R      tp  fp  fn   negatives called deposits")
    for g in grid:
        neg = ", ".join(f"{k} {v}" for k, v in g["negatives_called_deposits"].items())
        print(f"{g['window']:>6} {g['tolerance']:>6} {g['precision']:.3f}  {g['recall']:.3f}  "
              f"{g['tp']:>3} {g['fp']:>3} {g['fn']:>3}   {neg}")  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\nwritten to {a.out}")


if __name__ == "__main__":
    main()
