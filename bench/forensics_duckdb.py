"""The forensics queries written in DuckDB SQL over the same Parquet files, for the scale bench to time and check.

Same semantics as :mod:`forensics.queries` on a lake without candles (USDT at par is the only price): a hop
joins its frontier (``IN (SELECT node FROM frontier)``, so DuckDB can skip row groups with its own min/max
filters) on the copy sorted by the side it follows, keeps time-respecting transfers, aggregates per (node, next,
token), keeps each node's top ``top`` by USDT then stored value then address (``QUALIFY row_number()``), and
marks first discoveries; stop-category nodes are not expanded. Amounts are per token from ``raw_value`` with the
decimals of :func:`forensics.values.token_meta`. Only the hop work is here (no labels, risk paths or node
totals), which is the part whose cost grows with the lake.
"""

from __future__ import annotations

import duckdb
import polars as pl

from forensics.values import AT_PAR, NATIVE_KEY, token_meta

# the transfer columns forensics.queries.alerts reads for each hit (its _TRANSFER_COLS)
ALERT_ROW_COLUMNS = ["ts", "tx_hash", "log_index", "token", "symbol"]
ALERT_ROW_COLUMNS += ["from_address", "to_address", "value", "raw_value"]
USDT_PRICE = "CASE WHEN coalesce(t.token, 'native') IN ({}) THEN 1.0 END".format(", ".join(f"'{k}'" for k in AT_PAR))


def _pl(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())


def _files(paths: list[str]) -> str:
    return "[" + ", ".join(f"'{p}'" for p in paths) + "]"


class DuckForensics:
    """A DuckDB connection over the lake's transfer files: ``data`` (by sender) and ``by_to`` (by recipient)."""

    def __init__(self, by_from: list[str], by_to: list[str], tokens: list[str], threads: int | None = None):
        self.con = duckdb.connect()
        if threads:
            self.con.execute(f"SET threads = {threads}")
        self.src = {"out": _files(by_from), "in": _files(by_to)}
        meta = token_meta([NATIVE_KEY if t is None else t for t in tokens]).select("tkey", "decimals")
        self.con.register("meta_df", meta.to_arrow())
        self.con.execute("CREATE TABLE meta AS SELECT * FROM meta_df")
        # per-transfer amount: token units where the decimals are known, raw units where not (values.amounts)
        self.amount = (
            "CASE WHEN m.decimals IS NULL THEN TRY_CAST(t.raw_value AS DOUBLE) "
            "ELSE TRY_CAST(t.raw_value AS DOUBLE) / pow(10, m.decimals) END"
        )

    def trace(self, root: str, hops: int, direction: str, stop: list[str], top: int = 25) -> tuple[set, pl.DataFrame]:
        """``(nodes as {(address, hop)}, edges: source, target, tkey, count, first_ts, last_ts, raw_sum)``."""
        c = self.con
        sides = ["out", "in"] if direction == "both" else [direction]
        c.execute("CREATE OR REPLACE TEMP TABLE seen AS SELECT ?::VARCHAR AS address, 0::BIGINT AS hop", [root])
        c.register("stop_df", pl.DataFrame({"address": stop}, schema={"address": pl.String}).to_arrow())
        for s in sides:
            c.execute(
                f"CREATE OR REPLACE TEMP TABLE front_{s} AS SELECT ?::VARCHAR AS node, NULL::BIGINT AS bound", [root]
            )
        edges = []
        for h in range(1, hops + 1):
            for s in sides:
                if c.execute(f"SELECT count(*) FROM front_{s}").fetchone()[0] == 0:
                    continue
                near, far = ("from_address", "to_address") if s == "out" else ("to_address", "from_address")
                after = "t.ts >= f.bound" if s == "out" else "t.ts <= f.bound"
                c.execute(f"""
                    CREATE OR REPLACE TEMP TABLE hop AS
                    WITH r AS (
                        SELECT f.node, t.{far} AS next, coalesce(t.token, 'native') AS tkey, t.ts, t.value,
                               TRY_CAST(t.raw_value AS DOUBLE) AS raw, {USDT_PRICE} AS price
                        FROM read_parquet({self.src[s]}) t JOIN front_{s} f ON t.{near} = f.node
                        WHERE t.{near} IN (SELECT node FROM front_{s})
                          AND (f.bound IS NULL OR {after}) AND t.{far} <> f.node
                    ), agg AS (
                        SELECT node, next, tkey, count(*) AS count, min(ts) AS first_ts, max(ts) AS last_ts,
                               CASE WHEN count(raw) = count(*) THEN sum(raw) END AS raw_sum,
                               sum(value) AS stored_sum,
                               CASE WHEN count(price) = count(*) THEN sum(value * price) END AS px_stored
                        FROM r GROUP BY node, next, tkey
                    )
                    SELECT * FROM agg QUALIFY row_number() OVER (
                        PARTITION BY node ORDER BY px_stored DESC NULLS LAST, stored_sum DESC, next) <= {top}
                """)  # fmt: skip
                src, dst = ("node", "next") if s == "out" else ("next", "node")
                edges.append(
                    _pl(
                        c,
                        f"""SELECT {src} AS source, {dst} AS target, tkey, count, first_ts, last_ts, raw_sum,
                                  {h}::BIGINT AS hop FROM hop""",
                    )  # fmt: skip
                )
                bound = "min(first_ts)" if s == "out" else "max(last_ts)"
                c.execute(f"""
                    CREATE OR REPLACE TEMP TABLE new AS
                    SELECT next, {bound} AS bound FROM hop WHERE next NOT IN (SELECT address FROM seen) GROUP BY next
                """)  # fmt: skip
                c.execute(f"INSERT INTO seen SELECT next, {h} FROM new")
                c.execute(f"""CREATE OR REPLACE TEMP TABLE front_{s} AS
                              SELECT next AS node, bound FROM new WHERE next NOT IN (SELECT address FROM stop_df)""")
        nodes = set(c.execute("SELECT address, hop FROM seen").fetchall())
        if not edges:
            return nodes, pl.DataFrame()
        return nodes, pl.concat(edges).unique(["source", "target", "tkey"], keep="first", maintain_order=True)

    def counterparties(self, address: str) -> pl.DataFrame:
        """Per (counterparty, tkey): amounts and counts in and out (self-transfers left out)."""
        amount = self.amount
        return _pl(self.con, f"""
            WITH r AS (
                SELECT t.to_address AS counterparty, coalesce(t.token, 'native') AS tkey, 'out' AS side, {amount} AS a
                FROM read_parquet({self.src["out"]}) t LEFT JOIN meta m ON m.tkey = coalesce(t.token, 'native')
                WHERE t.from_address = $1 AND t.to_address <> $1
                UNION ALL
                SELECT t.from_address, coalesce(t.token, 'native'), 'in', {amount}
                FROM read_parquet({self.src["in"]}) t LEFT JOIN meta m ON m.tkey = coalesce(t.token, 'native')
                WHERE t.to_address = $1 AND t.from_address <> $1
            )
            SELECT counterparty, tkey,
                   coalesce(sum(a) FILTER (WHERE side = 'in'), 0) AS value_in,
                   coalesce(sum(a) FILTER (WHERE side = 'out'), 0) AS value_out,
                   count(*) FILTER (WHERE side = 'in') AS count_in, count(*) FILTER (WHERE side = 'out') AS count_out
            FROM r GROUP BY ALL
        """, [address])  # fmt: skip

    def alerts(
        self, labels: pl.DataFrame, thresholds: pl.DataFrame, since_ms: int | None = None, rows: bool = False
    ) -> pl.DataFrame:
        """``tx_hash, log_index, rule`` of every hit of the label rules and ``large`` (thresholds: tkey, threshold),
        over transfers at or after ``since_ms`` (all when None).

        ``rows``: each hit with the transfer columns :func:`forensics.queries.alerts` builds its table from
        (:data:`ALERT_ROW_COLUMNS`, then ``rule``), so DuckDB decodes what polars decodes; without it only the
        two key columns are read, which for the ``large`` rule skips decoding ``to_address``, ``from_address``,
        ``symbol``, ``ts``, ``value`` and ``raw_value`` of the hits (measured: most of the difference at 10M)."""
        c = self.con
        since = f"ts >= {since_ms}" if since_ms is not None else "TRUE"
        cols = ALERT_ROW_COLUMNS if rows else ["tx_hash", "log_index"]
        out = ", ".join(cols)
        touch = ", ".join(dict.fromkeys([*cols, "from_address", "to_address"]))
        large = ", ".join(f"t.{col}" for col in cols)
        c.register("labels_df", labels.select("address", "category").to_arrow())
        c.register("thr_df", thresholds.select("tkey", "threshold").to_arrow())
        risky = "SELECT address FROM labels_df WHERE category IN ('sanctioned', 'mixer', 'exploit', 'phishing')"
        return _pl(c, f"""
            WITH touching AS (
                SELECT {touch} FROM read_parquet({self.src["out"]})
                WHERE from_address IN ({risky}) AND {since}
                UNION ALL
                SELECT {touch} FROM read_parquet({self.src["in"]})
                WHERE to_address IN ({risky}) AND from_address NOT IN ({risky}) AND {since}
            ), tagged AS (
                SELECT t.*, lf.category AS fc, lt.category AS tc FROM touching t
                LEFT JOIN labels_df lf ON lf.address = t.from_address
                LEFT JOIN labels_df lt ON lt.address = t.to_address
            )
            SELECT {out}, 'sanctioned' AS rule FROM tagged WHERE fc = 'sanctioned' OR tc = 'sanctioned'
            UNION ALL SELECT {out}, 'mixer_deposit' FROM tagged WHERE tc = 'mixer'
            UNION ALL SELECT {out}, 'mixer_withdrawal' FROM tagged WHERE fc = 'mixer'
            UNION ALL SELECT {out}, 'exploit' FROM tagged WHERE fc = 'exploit' OR tc = 'exploit'
            UNION ALL SELECT {out}, 'phishing' FROM tagged WHERE tc = 'phishing'
            UNION ALL
            SELECT {large}, 'large' FROM read_parquet({self.src["out"]}) t
            JOIN thr_df h ON h.tkey = coalesce(t.token, 'native') LEFT JOIN meta m ON m.tkey = h.tkey
            WHERE {self.amount} >= h.threshold AND {since.replace("ts", "t.ts")}
        """)  # fmt: skip
