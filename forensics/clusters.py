"""Address clustering (F2 in reference/peer_systems.md §4.5): exchange deposit addresses and the users behind them.

GraphSense's core feature is the cluster: one entity instead of thousands of addresses. On Ethereum there is no
common-input heuristic; the strongest one is the **exchange deposit-address heuristic** of F. Victor, "Address
clustering heuristics for Ethereum" (FC 2020, LNCS 12059), also used by Tutela (arXiv 2201.06811) and Dune's
``cex.flows``. An exchange gives every customer a deposit address; whatever arrives there is forwarded ("swept")
to one of the exchange's hot wallets shortly afterwards, in (nearly) the same amount. So:

- an address that **receives** funds and **forwards** them to a labelled hot wallet of one exchange within
  :attr:`ClusterParams.window`, the amount within :attr:`ClusterParams.tolerance` (native ether may also lose the
  forwarding transaction's gas, :attr:`ClusterParams.native_fee`), and whose outgoing transfers are (nearly) all
  such forwards to that one exchange (:attr:`ClusterParams.min_share`), is that exchange's **deposit address**.
  How many distinct senders paid into it does not matter;
- the **exchange cluster** is its labelled hot wallets plus its deposit addresses;
- a **user cluster** is the senders that share deposit addresses (connected components of the sender-deposit
  graph): a deposit address belongs to one customer, so every wallet paying into it is that customer's.
  Labelled senders (another exchange's hot wallet withdrawing to a customer, a DEX) and senders paying into more
  than :attr:`ClusterParams.max_sender_deposits` addresses that forward to exchanges (payroll, payment
  processors) link nothing.

Hot wallets come from :mod:`continuum.labels` (category ``exchange``), minus the exchange-owned addresses that
never receive sweeps (deployers, deposit funders, contracts: :data:`NOT_COLLECTOR`). Amounts are compared within
one token only, on the stored ``value`` (a ratio of two amounts of the same token does not depend on decimals).

:func:`clusters` returns one row per (address, cluster) (:data:`CLUSTER_COLUMNS`); :func:`collapse` turns a
:class:`~forensics.queries.Trace` into one node per cluster, totals still per token; :func:`as_labels` gives the
deposit addresses as labels, so a trace stops at them as it stops at any exchange address. How well the heuristic
does on a scenario with known answers, and what it gets wrong: docs/forensics.md "Clustering".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from forensics.queries import Trace, labels_frame, node_totals, token_totals, transfers
from forensics.values import NATIVE_KEY, token_key


@dataclass(frozen=True)
class ClusterParams:
    """Knobs of the deposit-address heuristic. Defaults near Victor's (2020) as recalled (0.01 ETH, ~12 h of
    blocks; not re-checked); bench/clustering_eval.py measures what each one trades."""

    window: timedelta = timedelta(hours=12)  # a forward matches receipts at most this long before it
    tolerance: float = 0.01  # |forwarded - received| <= tolerance * received (relative, per token)
    native_fee: float = 0.01  # ether only: the deposit address pays the sweep's gas out of the amount (ETH)
    min_share: float = 0.9  # matched forwards to the one exchange / all its outgoing transfers (by count)
    min_forwards: int = 1  # at least this many matched forwards
    max_sender_deposits: int = 10  # a sender paying more candidates (found or not) is a service: links no users
    max_rounds: int = 64  # label-propagation rounds for the user components (stops early when stable)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.native_fee < 0:
            raise ValueError(f"native_fee must be >= 0, got {self.native_fee}")
        if not 0 < self.min_share <= 1:
            raise ValueError(f"min_share must be in (0, 1], got {self.min_share}")
        if self.min_forwards < 1 or self.max_sender_deposits < 1:
            raise ValueError("min_forwards and max_sender_deposits must be >= 1")


# Exchange-owned addresses that are not where deposits are swept to: forwarding to them says nothing.
NOT_COLLECTOR = (
    r"(?i)deployer|deposit funder|deposit supplier|contract|dex|router|nft|eth2 depositor|blacklister|token|dollar"
    r"|commerce fee|charity|recovery"
)
CLUSTER_COLUMNS = ["address", "cluster_id", "cluster_label", "kind", "role", "exchange", "count"]
CLUSTER_COLUMNS += ["first_seen", "last_seen", "hot_wallet", "deposit", "cluster_size"]
_CLUSTER_SCHEMA = {
    "address": pl.String,
    "cluster_id": pl.String,
    "cluster_label": pl.String,
    "kind": pl.String,  # exchange | user
    "role": pl.String,  # hot wallet | deposit | sender
    "exchange": pl.String,  # the exchange (users: the exchanges of their deposit addresses, comma-joined)
    "count": pl.Int64,  # evidence: matched forwards (deposit, hot wallet) or payments into deposits (sender)
    "first_seen": pl.Int64,  # ms of the first / last piece of that evidence
    "last_seen": pl.Int64,
    "hot_wallet": pl.String,  # the hot wallet the deposit forwards to (most often); senders: their deposit's
    "deposit": pl.String,  # senders: a deposit address they paid into (the first)
    "cluster_size": pl.Int64,
}


# --------------------------------------------------------------------------- hot wallets
def exchange_name(name: pl.Expr) -> pl.Expr:
    """The exchange a label names: ``Binance 14`` -> ``Binance``, ``Huobi: Deposit Funder 2`` -> ``Huobi``."""
    return name.str.split(":").list.first().str.replace(r"\s*\d+$", "").str.strip_chars()


def hot_wallets(labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """``address, exchange, name``: exchange-labelled addresses that receive sweeps (not :data:`NOT_COLLECTOR`).

    Spellings of one exchange are merged case-insensitively (``Kucoin``/``KuCoin``) under the commonest one.
    """
    lab = labels_frame(labels).filter(pl.col("category") == "exchange")
    hot = lab.filter(~pl.col("name").str.contains(NOT_COLLECTOR)).select(
        "address", exchange_name(pl.col("name")).alias("exchange"), "name"
    )
    canon = (
        hot.group_by(pl.col("exchange").str.to_lowercase().alias("key"), "exchange")
        .len()
        .sort(["len", "exchange"], descending=[True, False])
        .group_by("key", maintain_order=True)
        .first()
        .select("key", pl.col("exchange").alias("canonical"))
    )
    return (
        hot.with_columns(pl.col("exchange").str.to_lowercase().alias("key"))
        .join(canon, on="key")
        .select("address", pl.col("canonical").alias("exchange"), "name")
    )


def _cluster_id(exchange: pl.Expr) -> pl.Expr:
    return pl.lit("exchange:") + exchange.str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-")


# --------------------------------------------------------------------------- deposit addresses
def _events(lf: pl.LazyFrame, hot: pl.DataFrame, labelled: pl.DataFrame) -> pl.LazyFrame:
    """Every transfer into or out of a candidate (an unlabelled address that sent to a hot wallet), one row each:
    ``addr, tkey, ts, log_index, amount, is_out, other, exchange`` (``exchange``: ``other``'s, on outgoing rows)."""
    lf = lf.filter(pl.col("from_address") != pl.col("to_address")).with_columns(token_key().alias("tkey"))
    hot_lf = hot.lazy().select(pl.col("address").alias("other"), "exchange")
    cand = (
        lf.join(hot.lazy(), left_on="to_address", right_on="address", how="semi")
        .select(pl.col("from_address").alias("addr"))
        .unique()
        .join(labelled.lazy().select(pl.col("address").alias("addr")), on="addr", how="anti")
    )
    cols = ["addr", "tkey", "ts", "log_index", "amount", "is_out", "other"]
    outs = lf.join(cand, left_on="from_address", right_on="addr", how="semi").select(
        pl.col("from_address").alias("addr"),
        "tkey",
        "ts",
        "log_index",
        pl.col("value").alias("amount"),
        pl.lit(True).alias("is_out"),
        pl.col("to_address").alias("other"),
    )
    ins = lf.join(cand, left_on="to_address", right_on="addr", how="semi").select(
        pl.col("to_address").alias("addr"),
        "tkey",
        "ts",
        "log_index",
        pl.col("value").alias("amount"),
        pl.lit(False).alias("is_out"),
        pl.col("from_address").alias("other"),
    )
    return (
        pl.concat([outs.select(cols), ins.select(cols)])
        .join(hot_lf, on="other", how="left")
        .with_columns(pl.when(pl.col("is_out")).then(pl.col("exchange")).alias("exchange"))
    )


def _forwards(events: pl.LazyFrame, p: ClusterParams) -> pl.LazyFrame:
    """Each outgoing transfer with what arrived for it: the receipts of the same token since the previous outgoing
    transfer of that token and at most ``window`` before it (``received``, ``n_in``, ``first_in``), and ``matched``."""
    ev = events.sort("addr", "tkey", "ts", "is_out", "log_index").with_columns(
        # segment k: the receipts after outgoing transfer k-1, closed by outgoing transfer k
        (pl.col("is_out").cast(pl.Int64).cum_sum().over("addr", "tkey") - pl.col("is_out").cast(pl.Int64)).alias("seg")
    )
    outs = ev.filter(pl.col("is_out"))
    recv = (
        ev.filter(~pl.col("is_out"))
        .join(outs.select("addr", "tkey", "seg", pl.col("ts").alias("ts_out")), on=["addr", "tkey", "seg"])
        .filter(pl.col("ts") >= pl.col("ts_out") - int(p.window.total_seconds() * 1000))
        .group_by("addr", "tkey", "seg")
        .agg(
            pl.col("amount").sum().alias("received"),
            pl.len().alias("n_in"),
            pl.col("ts").min().alias("first_in"),
        )
    )
    slack = pl.when(pl.col("tkey") == NATIVE_KEY).then(pl.lit(p.native_fee)).otherwise(pl.lit(0.0))
    got, sent = pl.col("received"), pl.col("amount")
    return outs.join(recv, on=["addr", "tkey", "seg"], how="left").with_columns(
        (
            pl.col("exchange").is_not_null()
            & (got > 0)
            & (sent <= got * (1 + p.tolerance))
            & (sent >= got * (1 - p.tolerance) - slack)
        )
        .fill_null(False)
        .alias("matched")
    )


def _deposits(fwd: pl.LazyFrame, p: ClusterParams) -> pl.LazyFrame:
    """Addresses whose outgoing transfers are (nearly) all matched forwards to one exchange."""
    m = pl.col("matched")
    return (
        fwd.group_by("addr")
        .agg(
            pl.len().alias("n_out"),
            pl.col("exchange").drop_nulls().n_unique().alias("n_exchanges"),
            pl.col("exchange").drop_nulls().first().alias("exchange"),
            m.sum().alias("count"),
            pl.col("ts").filter(m).min().alias("first_seen"),
            pl.col("ts").filter(m).max().alias("last_seen"),
            pl.col("other").filter(m).mode().sort().first().alias("hot_wallet"),
        )
        .filter(
            (pl.col("n_exchanges") == 1)
            & (pl.col("count") >= p.min_forwards)
            & (pl.col("count") >= p.min_share * pl.col("n_out"))
        )
        .select(
            pl.col("addr").alias("address"),
            "exchange",
            pl.col("count").cast(pl.Int64),
            "first_seen",
            "last_seen",
            "hot_wallet",
        )  # fmt: skip
    )


# --------------------------------------------------------------------------- user components
def components(edges: pl.DataFrame, max_rounds: int = 64) -> pl.DataFrame:
    """Connected components of an undirected graph given as ``a, b`` edges: ``node, component`` (the smallest
    node of its component), by min-label propagation, one join per round (rounds <= the longest shortest path)."""
    both = pl.concat([edges.select("a", "b"), edges.select(pl.col("b").alias("a"), pl.col("a").alias("b"))])
    comp = both.select(pl.col("a").alias("node")).unique().with_columns(pl.col("node").alias("component"))
    for _ in range(max_rounds):
        nxt = (
            both.join(comp.rename({"node": "b", "component": "cb"}), on="b")
            .group_by(pl.col("a").alias("node"))
            .agg(pl.col("cb").min())
            .join(comp, on="node")
            .select("node", pl.min_horizontal("component", "cb").alias("component"))
        )
        if nxt.sort("node").equals(comp.sort("node")):
            break
        comp = nxt
    return comp.sort("node")


def _users(ins: pl.LazyFrame, deposits: pl.DataFrame, labelled: pl.DataFrame, p: ClusterParams) -> pl.DataFrame:
    """User clusters: senders linked through the deposit addresses they paid into (two or more senders each).
    ``ins``: every transfer into a candidate (``addr``) from a sender (``other``)."""
    pays = (
        ins.drop("exchange")
        .join(deposits.lazy().select(pl.col("address").alias("addr"), "exchange", "hot_wallet"), on="addr")
        .join(labelled.lazy().select(pl.col("address").alias("other")), on="other", how="anti")
        .join(deposits.lazy().select(pl.col("address").alias("other")), on="other", how="anti")
        .collect()
    )
    # counted over every candidate it paid (an address that sent to a hot wallet), found or not: a payroll paying
    # 15 deposit addresses of which 6 were swept too late to be found is still a payroll
    busy = (
        ins.group_by("other")
        .agg(pl.col("addr").n_unique().alias("n"))
        .filter(pl.col("n") > p.max_sender_deposits)
        .select("other")
        .collect()
    )
    pays = pays.join(busy, on="other", how="anti")
    if pays.is_empty():
        return pl.DataFrame(schema=_CLUSTER_SCHEMA)
    comp = components(pays.select(pl.col("other").alias("a"), pl.col("addr").alias("b")).unique(), p.max_rounds)
    senders = (
        pays.sort("ts")
        .group_by("other")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("ts").min().alias("first_seen"),
            pl.col("ts").max().alias("last_seen"),
            pl.col("addr").first().alias("deposit"),
            pl.col("hot_wallet").first(),
        )
        .join(comp, left_on="other", right_on="node")
    )
    per = (
        pays.join(comp, left_on="other", right_on="node")
        .group_by("component")
        .agg(
            pl.col("other").n_unique().cast(pl.Int64).alias("cluster_size"),
            pl.col("exchange").unique().sort().str.join(", ").alias("exchange"),
        )
        .filter(pl.col("cluster_size") >= 2)
    )
    return senders.join(per, on="component").select(
        pl.col("other").alias("address"),
        (pl.lit("user:") + pl.col("component")).alias("cluster_id"),
        pl.format("user of {} ({} addresses)", pl.col("exchange"), pl.col("cluster_size")).alias("cluster_label"),
        pl.lit("user").alias("kind"),
        pl.lit("sender").alias("role"),
        "exchange",
        "count",
        "first_seen",
        "last_seen",
        "hot_wallet",
        "deposit",
        "cluster_size",
    )


# --------------------------------------------------------------------------- the cluster table
def clusters(
    source: object,
    params: ClusterParams | None = None,
    *,
    labels: pl.DataFrame | None = None,
    token: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pl.DataFrame:
    """The cluster table over the lake's transfers (or a transfer frame): one row per (address, cluster).

    ``kind="exchange"`` rows are an exchange's hot wallets seen in the data (``role="hot wallet"``) and the deposit
    addresses found (``role="deposit"``, ``cluster_label`` e.g. ``"Binance (deposit)"``); ``kind="user"`` rows are
    senders sharing deposit addresses (``role="sender"``). Evidence: ``count`` (matched forwards, or payments into
    deposit addresses), ``first_seen``/``last_seen`` (ms), ``hot_wallet``, ``deposit``. Columns:
    :data:`CLUSTER_COLUMNS`; sorted by kind, cluster, role, address.
    """
    p = params or ClusterParams()
    lab = labels_frame(labels)
    hot = hot_wallets(lab)
    lf = transfers(source, token=token, start=start, end=end)
    events = _events(lf, hot, lab)
    fwd = _forwards(events, p)
    deposits, seen_hot, matched = pl.collect_all(
        [
            _deposits(fwd, p),
            # hot wallets that appear in the data (either side of a transfer)
            pl.concat([lf.select(pl.col(c).alias("address")) for c in ("from_address", "to_address")])
            .join(hot.lazy(), on="address", how="semi")
            .unique(),
            fwd.filter(pl.col("matched")).select("addr", "other", "ts"),
        ]
    )
    matched = matched.join(deposits.select(pl.col("address").alias("addr")), on="addr", how="semi")
    hot_rows = (
        seen_hot.join(hot, on="address")
        .join(
            matched.group_by(pl.col("other").alias("address")).agg(
                pl.len().cast(pl.Int64).alias("count"),
                pl.col("ts").min().alias("first_seen"),
                pl.col("ts").max().alias("last_seen"),
            ),
            on="address",
            how="left",
        )
        .with_columns(
            pl.col("count").fill_null(0), pl.lit("hot wallet").alias("role"), pl.lit(None).alias("hot_wallet")
        )
    )
    ex = pl.concat(
        [
            hot_rows.select("address", "exchange", "role", "count", "first_seen", "last_seen", "hot_wallet"),
            deposits.with_columns(pl.lit("deposit").alias("role")).select(
                "address", "exchange", "role", "count", "first_seen", "last_seen", "hot_wallet"
            ),
        ],
        how="vertical_relaxed",
    ).with_columns(
        _cluster_id(pl.col("exchange")).alias("cluster_id"),
        pl.format("{} ({})", pl.col("exchange"), pl.col("role")).alias("cluster_label"),
        pl.lit("exchange").alias("kind"),
        pl.lit(None, pl.String).alias("deposit"),
        pl.len().over("exchange").cast(pl.Int64).alias("cluster_size"),
    )
    users = _users(events.filter(~pl.col("is_out")), deposits, lab, p)
    out = pl.concat([ex.select(CLUSTER_COLUMNS).cast(_CLUSTER_SCHEMA), users.cast(_CLUSTER_SCHEMA)])
    return out.sort("kind", "cluster_id", "role", "address")


def summary(table: pl.DataFrame) -> pl.DataFrame:
    """One row per cluster: ``cluster_id, label, kind, exchange, hot_wallets, deposits, senders, evidence,
    first_seen, last_seen``, largest first."""
    role = pl.col("role")
    return (
        table.group_by("cluster_id", "kind")
        .agg(
            pl.col("cluster_label").filter(role != "hot wallet").first().alias("label"),
            pl.col("exchange").first(),
            (role == "hot wallet").sum().cast(pl.Int64).alias("hot_wallets"),
            (role == "deposit").sum().cast(pl.Int64).alias("deposits"),
            (role == "sender").sum().cast(pl.Int64).alias("senders"),
            pl.col("count").filter(role != "hot wallet").sum().cast(pl.Int64).alias("evidence"),
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
        )
        .with_columns(pl.coalesce("label", pl.col("exchange")).alias("label"))
        .sort(["kind", "deposits", "senders", "cluster_id"], descending=[False, True, True, False])
        .select(
            "cluster_id",
            "label",
            "kind",
            "exchange",
            "hot_wallets",
            "deposits",
            "senders",
            "evidence",
            "first_seen",
            "last_seen",
        )  # fmt: skip
    )


def as_labels(table: pl.DataFrame) -> pl.DataFrame:
    """Deposit addresses as labels (``address, name, category="exchange", source="cluster"``), to add to the label
    set of a trace: it then stops at a deposit address as it stops at any exchange address."""
    return table.filter(pl.col("role") == "deposit").select(
        "address", pl.col("cluster_label").alias("name"), pl.lit("exchange").alias("category"),
        pl.lit("cluster").alias("source"),
    )  # fmt: skip


# --------------------------------------------------------------------------- collapse a trace
def _members(trace: Trace, table: pl.DataFrame, kinds: tuple[str, ...]) -> pl.DataFrame:
    order = {k: i for i, k in enumerate(kinds)}
    t = table.filter(pl.col("kind").is_in(list(kinds))).with_columns(
        pl.col("kind").replace_strict(order, return_dtype=pl.Int64).alias("rank")
    )
    t = t.sort("rank").unique("address", keep="first")  # an address in two kinds: the first of ``kinds`` wins
    names = t.group_by("cluster_id").agg(
        pl.when(pl.col("kind").first() == "exchange")
        .then(pl.col("exchange").first())
        .otherwise(pl.col("cluster_label").first())
        .alias("name"),
        pl.when(pl.col("kind").first() == "exchange").then(pl.lit("exchange")).alias("cluster_category"),
    )
    return (
        trace.nodes.select("address")
        .join(t.select("address", "cluster_id"), on="address", how="left")
        .join(names, on="cluster_id", how="left")
        .with_columns(pl.coalesce("cluster_id", "address").alias("node"))
    )


def collapse(trace: Trace, table: pl.DataFrame, kinds: tuple[str, ...] = ("exchange", "user")) -> Trace:
    """The trace with each cluster of ``table`` (:func:`clusters`) as one node.

    A cluster node's ``address`` is its ``cluster_id`` (``exchange:binance``), ``label`` the exchange (or the user
    cluster's label), ``members`` the traced addresses in it. Edges between members of one cluster (a deposit
    address sweeping to its hot wallet) are inside the node and dropped; edges into and out of it are merged per
    (source, target, token): values added within a token only, ``usd`` only when every merged edge had one.
    Totals are recomputed per (node, token) from the merged edges, never summed across tokens. ``kinds`` picks
    the cluster kinds to collapse; an address in two (a deposit address is its exchange's and its user's) joins
    the first listed.
    """
    m = _members(trace, table, kinds)
    node_of = dict(zip(m["address"], m["node"], strict=True))
    remap = m.select("address", "node")
    e = (
        trace.edges.join(remap.rename({"address": "source", "node": "src"}), on="source", how="left")
        .join(remap.rename({"address": "target", "node": "dst"}), on="target", how="left")
        .with_columns(pl.coalesce("src", "source").alias("source"), pl.coalesce("dst", "target").alias("target"))
        .filter(pl.col("source") != pl.col("target"))
    )
    keys = ["source", "target", "token", "token_label", "unit", "decimals_source"]
    edges = (
        e.group_by(keys, maintain_order=True)
        .agg(
            pl.col("symbol").first(),
            pl.col("value").sum(),
            pl.when(pl.col("usd").null_count() == 0).then(pl.col("usd").sum()).alias("usd"),
            pl.col("count").sum(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("hop").min(),
        )
        .select(trace.edges.columns)
        .sort(["hop", "usd", "value"], descending=[False, True, True], nulls_last=True)
    )
    totals = token_totals(edges)
    nodes = trace.nodes.join(m.select("address", "node", "cluster_id", "name", "cluster_category"), on="address")
    side_rank = pl.col("side").replace_strict({"root": 0}, default=1, return_dtype=pl.Int64)
    seen = (
        nodes.sort([side_rank, "hop", "address"])
        .group_by("node", maintain_order=True)
        .agg(
            pl.col("hop").first(),
            pl.col("side").first(),
            pl.col("cluster_id").first(),
            pl.coalesce(pl.col("name").first(), pl.col("label").first()).alias("label"),
            pl.coalesce(pl.col("cluster_category").first(), pl.col("category").drop_nulls().first()).alias("category"),
            pl.when(pl.col("cluster_id").first().is_not_null())
            .then(pl.lit("cluster"))
            .otherwise(pl.col("label_source").first())
            .alias("label_source"),
            pl.col("flagged").any(),
            pl.col("path_risk").list.explode(keep_nulls=False, empty_as_null=False).unique().sort().alias("path_risk"),
            pl.col("address").sort().alias("members"),
        )
        .rename({"node": "address"})
        .with_columns(pl.col("members").list.len().cast(pl.Int64).alias("n_members"))
    )
    out = node_totals(seen, edges, totals)
    cols = [*trace.nodes.columns, "cluster_id", "n_members", "members"]
    nodes_out = out.select(cols).sort("hop", "address")
    return Trace(node_of.get(trace.root, trace.root), trace.direction, trace.hops, nodes_out, edges, totals)
