"""Fixture data for the dashboard, derived from the bundled real Binance candles.

Not the learner: a three-speed EWMA rule written here (spans of a day, a week and a month, like Hope's
CMS periods) produces signals with per-level "update norms", and the evaluation and backtest files are
computed from those signals and the realised returns in the schemas the learner and strategies write.
Nothing is hard-coded: every number on the pages comes from the candles.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from continuum.config import BUNDLED_DATA
from continuum.lake import Lake
from forensics.etl_import import read_export

# vendored in the repository (MIT, see tests/data/SOURCES.md): the tests need nothing beside the clone
ETL_SAMPLES = Path(__file__).resolve().parents[1] / "data" / "ethereum_etl_mainnet_samples"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
START, SWITCH, END = (
    datetime(2022, 11, 1, tzinfo=UTC),
    datetime(2023, 1, 1, tzinfo=UTC),
    datetime(2023, 3, 1, tzinfo=UTC),
)
REGIMES = [("2022 bear", START, SWITCH), ("2023-24 recovery", SWITCH, END)]
SPANS = {"l0": 24, "l1": 168, "l2": 720}


def _panel() -> pl.DataFrame:
    frames = []
    for sym in SYMBOLS:
        f = BUNDLED_DATA / f"{sym.replace('/', '_')}-1h.parquet"
        df = pl.read_parquet(f).filter(pl.col("date") >= datetime(2022, 9, 1, tzinfo=UTC), pl.col("date") < END)
        frames.append(
            df.sort("date").select(
                pl.lit(sym).alias("symbol"),
                (pl.col("date").dt.epoch("ms")).alias("ts"),
                pl.col("close").log().diff().alias("r"),
            )
        )
    p = pl.concat(frames).drop_nulls()
    o = pl.col("r").over("symbol", order_by="ts")
    ewm = {k: pl.col("r").ewm_mean(span=s).over("symbol", order_by="ts") for k, s in SPANS.items()}
    p = p.with_columns(
        **{f"m_{k}": e for k, e in ewm.items()},
        var=(pl.col("r") ** 2).ewm_mean(span=24).over("symbol", order_by="ts"),
        var_slow=(pl.col("r") ** 2).ewm_mean(span=168).over("symbol", order_by="ts"),
        r_next=o.shift(-1),
        rv_24=(pl.col("r") ** 2).rolling_sum(24).over("symbol", order_by="ts").shift(-24).over("symbol", order_by="ts"),
        ret_next_24=pl.col("r").rolling_sum(24).over("symbol", order_by="ts").shift(-24).over("symbol", order_by="ts"),
    )
    return p.filter(pl.col("ts") >= int(START.timestamp() * 1000))


def _signals(p: pl.DataFrame) -> pl.DataFrame:
    upd = {f"cms_{k}_update_norm": pl.col(f"m_{k}").diff().abs().over("symbol", order_by="ts") for k in SPANS}
    return p.select(
        pl.lit("ewma").alias("model"),
        pl.lit("binance").alias("exchange"),
        "symbol",
        "ts",
        pl.col("m_l0").alias("ret_1h"),
        (pl.col("m_l1") * 24).alias("ret_24h"),
        (pl.col("var") * 24).sqrt().alias("vol_24h"),
        pl.col("var").sqrt().alias("ret_1h_std"),
        (pl.col("var") * 24).sqrt().alias("ret_24h_std"),
        pl.when(pl.col("var") > pl.col("var_slow")).then(pl.lit("volatile")).otherwise(pl.lit("calm")).alias("regime"),
        pl.struct(**upd, surprise=pl.col("r") ** 2 / pl.col("var").shift(1).over("symbol", order_by="ts"))
        .struct.json_encode()
        .alias("activity"),
    ).drop_nulls()


def _qlike(realised: pl.Expr, forecast_var: pl.Expr) -> pl.Expr:
    ratio = realised / forecast_var
    return ratio - ratio.log() - 1


def _metrics(df: pl.DataFrame) -> dict[str, float]:
    return {
        "ret_1h_mse": float(df["se"].mean()),
        "ret_24h_mse": float(((df["ret_24h"] - df["ret_next_24"]) ** 2).mean()),
        "vol_24h_qlike": float(df["qlike"].mean()),
        "hit_rate_1h": float((df["ret_1h"].sign() == df["r_next"].sign()).mean()),
        "rank_ic_24h": float(df.select(pl.corr("ret_24h", "ret_next_24", method="spearman")).item()),
    }


def write_fixture(root: Path) -> dict[str, Path]:
    """Lake (signals + real mainnet transfers), evaluation dir and backtest dir under ``root``."""
    p = _panel()
    lake = Lake(root / "lake")
    lake.append("signal", _signals(p))
    lake.append_events(read_export(ETL_SAMPLES))

    models = {"ewma_fast": ("m_l0", "var"), "ewma_slow": ("m_l1", "var_slow")}
    scored = []
    for name, (mcol, vcol) in models.items():
        s = p.drop_nulls(["rv_24", "r_next"]).select(
            pl.lit(name).alias("model"),
            "symbol",
            "ts",
            "r_next",
            "ret_next_24",
            "rv_24",
            pl.col(mcol).alias("ret_1h"),
            (pl.col(mcol) * 24).alias("ret_24h"),
            (pl.col(vcol) * 24).alias("fvar"),
        )
        scored.append(
            s.with_columns(se=(pl.col("ret_1h") - pl.col("r_next")) ** 2, qlike=_qlike(pl.col("rv_24"), pl.col("fvar")))
        )
    sc = pl.concat(scored)
    regime = pl.lit(None, pl.String)
    for name, a, b in REGIMES:
        regime = (
            pl.when((pl.col("ts") >= a.timestamp() * 1000) & (pl.col("ts") < b.timestamp() * 1000))
            .then(pl.lit(name))
            .otherwise(regime)
        )
    sc = sc.with_columns(regime=regime)
    ev_models = {}
    for name in models:
        m = sc.filter(pl.col("model") == name)
        # R[i][j]: the variance state frozen at the end of regime i, as a constant forecast on regime j
        R = []
        for _, _, end_i in REGIMES:
            frozen = (
                m.filter(pl.col("ts") < end_i.timestamp() * 1000)
                .sort("ts")
                .group_by("symbol")
                .last()
                .select("symbol", pl.col("fvar").alias("frozen"))
            )
            R.append(
                [
                    float(
                        m.filter(pl.col("regime") == rj)
                        .join(frozen, on="symbol")
                        .select(_qlike(pl.col("rv_24"), pl.col("frozen")).mean())
                        .item()
                    )
                    for rj, _, _ in REGIMES
                ]
            )
        T = len(R)
        bwt = sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
        # error metric: forgetting is how much worse the final state is than the best earlier one
        forget = sum(R[T - 1][j] - min(R[k][j] for k in range(j, T - 1)) for j in range(T - 1)) / (T - 1)
        roll = (
            m.group_by("ts")
            .agg(pl.col("qlike").mean())
            .sort("ts")
            .with_columns(pl.col("qlike").rolling_mean(24).alias("roll"))
        )
        after = roll.filter(pl.col("ts") >= SWITCH.timestamp() * 1000)
        steady = float(after["qlike"].median())
        back = after.with_row_index("h").filter(pl.col("roll") <= 1.1 * steady)
        ev_models[name] = {
            "cumulative": _metrics(m),
            "per_regime": {rn: _metrics(m.filter(pl.col("regime") == rn)) for rn, _, _ in REGIMES},
            "forgetting": {"metric": "vol_24h_qlike", "R": R, "bwt": bwt, "avg_forgetting": forget},
            "switches": [
                {
                    "regime": REGIMES[1][0],
                    "peak_error": float(after.head(168)["roll"].max()),
                    "recovery_hours": int(back["h"][0]) if back.height else None,
                }
            ],
            "steps_per_s": None,
        }
    evd = root / "eval"
    evd.mkdir()
    iso = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731
    (evd / "evaluation.json").write_text(json.dumps({
        "data": {"symbols": list(SYMBOLS), "start": iso(START), "end": iso(END), "pretrain_until": None},
        "regimes": [{"name": n, "start": iso(a), "end": iso(b)} for n, a, b in REGIMES],
        "models": ev_models,
    }))  # fmt: skip
    sc.group_by("ts", "model").agg(
        pl.col("qlike").mean().alias("vol_24h_qlike"), pl.col("se").mean().alias("ret_1h_se")
    ).sort("ts", "model").write_parquet(evd / "errors.parquet")

    # backtest: long when the 24h forecast is positive, else flat; against buy-and-hold; equal weight
    sig = _signals(p).join(p.select("symbol", "ts", "r_next"), on=["symbol", "ts"]).drop_nulls("r_next")
    pos = {"ewma_long_flat": (pl.col("ret_24h") > 0).cast(pl.Float64), "buy_and_hold": pl.lit(1.0)}
    bt, eq = {}, []
    for name, e in pos.items():
        port = (
            sig.with_columns(pos=e)
            .group_by("ts")
            .agg((pl.col("pos") * pl.col("r_next")).mean().alias("pr"), pl.col("pos").mean())
            .sort("ts")
        )
        port = port.with_columns(equity=pl.col("pr").cum_sum().exp(), turn=pl.col("pos").diff().abs().fill_null(0.0))

        def stats(d: pl.DataFrame) -> dict[str, float]:
            eqs = d["pr"].cum_sum().exp()
            return {
                "return": float(eqs[-1] - 1),
                "sharpe": float(d["pr"].mean() / d["pr"].std() * math.sqrt(8760)),
                "max_drawdown": float((eqs / eqs.cum_max() - 1).min()),
                "hit_rate": float((d.filter(pl.col("pos") > 0)["pr"] > 0).mean()),
                "turnover": float(d["turn"].sum() / (d.height / 24)),
            }

        bt[name] = {
            "total": stats(port),
            "per_regime": {
                n: stats(port.filter((pl.col("ts") >= a.timestamp() * 1000) & (pl.col("ts") < b.timestamp() * 1000)))
                for n, a, b in REGIMES
            },
        }
        # per-bar turnover of the trade at ts, and its cost (none: these returns are before costs)
        eq.append(port.select("ts", pl.lit(name).alias("strategy"), "equity", turnover="turn", cost=pl.lit(0.0)))
    btd = root / "backtest"
    btd.mkdir()
    (btd / "backtest.json").write_text(json.dumps({"strategies": bt}))
    pl.concat(eq).write_parquet(btd / "equity.parquet")
    return {"lake": root / "lake", "eval": evd, "backtest": btd}


@pytest.fixture(scope="session")
def dash_data(tmp_path_factory) -> dict[str, Path]:
    return write_fixture(tmp_path_factory.mktemp("dash"))


@pytest.fixture()
def dash_env(dash_data, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("CONTINUUM_DASHBOARD_LAKE", str(dash_data["lake"]))
    monkeypatch.setenv("CONTINUUM_DASHBOARD_EVAL_DIR", str(dash_data["eval"]))
    monkeypatch.setenv("CONTINUUM_DASHBOARD_BACKTEST_DIR", str(dash_data["backtest"]))
    return dash_data
