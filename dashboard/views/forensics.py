"""Forensics: trace funds from an address, rank its counterparties, read labels and alert hits."""

from __future__ import annotations

import polars as pl
import streamlit as st

from continuum.errors import UserError
from dashboard.data import has_transfers, lake_root

st.title("Forensics")
if not has_transfers():
    st.info(
        f"No transfers in the lake at `{lake_root()}` yet.\n\nRun:\n\n"
        "`continuum backfill chain --rpc URL --from-block A --to-block B`\n\n"
        f"or import an ethereum-etl export: `continuum import etl EXPORT_DIR --lake {lake_root()}`"
    )
    st.stop()

from continuum.lake import Lake  # noqa: E402
from forensics import queries  # noqa: E402
from forensics.addresses import parse_address  # noqa: E402
from forensics.graph import to_dot  # noqa: E402

lake = Lake(lake_root())


@st.cache_data(show_spinner=False, max_entries=4)
def busiest(root: str) -> pl.DataFrame:
    """The most active addresses in the lake, with labels: starting points when no address is given."""
    lf = queries.transfers(Lake(root))
    both = pl.concat(
        [lf.select(pl.col("from_address").alias("address")), lf.select(pl.col("to_address").alias("address"))]
    )
    top = (
        both.group_by("address")
        .len("transfers")
        .sort("transfers", "address", descending=[True, False])
        .head(12)
        .collect()
    )
    lab = queries.labels_frame()
    return top.join(lab.select("address", "name", "category"), on="address", how="left", maintain_order="left")


c1, c2, c3, c4 = st.columns([4, 1, 1, 1])
text = c1.text_input("Address", placeholder="0x… (40 hex digits; mixed case must pass its EIP-55 checksum)")
hops = c2.number_input("Hops", min_value=1, max_value=6, value=2)
direction = c3.selectbox("Direction", ["out", "in", "both"], help="out: where funds went; in: where they came from")
token = c4.text_input("Token", placeholder="any", help="symbol (USDC, ETH) or contract address")

if not text.strip():
    st.caption("Enter an address to trace. The busiest addresses in the lake:")
    st.dataframe(busiest(str(lake_root())), hide_index=True, width="stretch")
    st.stop()
try:
    address = parse_address(text)
except UserError as e:
    st.error(str(e))
    st.stop()

t = queries.trace(lake, address, hops=int(hops), direction=direction, token=token.strip() or None)
label = queries.labels_frame().filter(pl.col("address") == address)
if not label.is_empty():
    r = label.row(0, named=True)
    st.markdown(f"**{address}** is labelled **{r['name']}** — category **{r['category']}** (source: {r['source']})")
if t.edges.is_empty():
    st.info(
        f"No transfers {dict(out='from', both='with').get(direction, 'into')} {address} in the lake with these filters."
    )
    st.stop()

risky = t.flagged
m1, m2, m3 = st.columns(3)
m1.metric("Addresses reached", t.nodes.height - 1)
m2.metric("Edges", t.edges.height)
m3.metric("In a risk category", risky.height)
for r in risky.iter_rows(named=True):
    st.error(f"{r['category']}: {r['label'] or r['address']} ({r['address']}) at hop {r['hop']} ({r['side']})")

st.subheader("Trace graph")
st.graphviz_chart(to_dot(t), width="stretch")
tab_n, tab_e, tab_c, tab_a = st.tabs(["Nodes", "Edges", "Counterparties", "Alerts"])
with tab_n:
    st.dataframe(t.nodes.with_columns(pl.col("path_risk").list.join(", ")), hide_index=True, width="stretch")
with tab_e:
    edges = t.edges.with_columns(pl.from_epoch(c, time_unit="ms") for c in ("first_ts", "last_ts"))
    st.dataframe(edges, hide_index=True, width="stretch")
with tab_c:
    cp = queries.counterparties(lake, address, token=token.strip() or None)
    st.dataframe(
        cp.with_columns(pl.from_epoch(c, time_unit="ms") for c in ("first_seen", "last_seen")),
        hide_index=True,
        width="stretch",
    )
with tab_a:
    hits = (
        queries.alerts(lake, watch=(address,))
        .filter((pl.col("from_address") == address) | (pl.col("to_address") == address))
        .filter(pl.col("rule") != "watch")
    )
    if hits.is_empty():
        st.success("No alert rule (sanctioned, mixer, exploit, phishing, large) fires on this address's transfers.")
    else:
        st.dataframe(hits.with_columns(pl.from_epoch("ts", time_unit="ms")), hide_index=True, width="stretch")
