"""Address labels shipped with the product: exchanges, bridges, mixers, sanctioned, exploit and phishing addresses.

The label set is one compact Parquet file, ``continuum/labels/labels.parquet`` (rebuilt from public sources by
``continuum/labels/build.py``; sources and licences in ``continuum/labels/SOURCES.md``). Ingest tags every
transfer with it, the onchain features count exchange flows and sanctioned/mixer touches with it, and the
forensics queries and the dashboard show it on paths. This module is the only reader of the file.

>>> label_of("0x910Cbd523D972eb0a6f4cAe4618aD62622b39DbF")["category"]  # a Tornado pool, OFAC-listed
'sanctioned'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import polars as pl

__all__ = ["CATEGORIES", "LABELS_PATH", "load_labels", "label_of", "tag_frame", "addresses_in"]

LABELS_PATH = Path(__file__).resolve().parent / "labels" / "labels.parquet"
CATEGORIES = ("sanctioned", "exploit", "mixer", "phishing", "exchange", "bridge", "dex", "other")


@lru_cache(maxsize=4)
def _load(path: str) -> pl.DataFrame:
    return pl.read_parquet(path).with_columns(pl.col("category").cast(pl.String))


@lru_cache(maxsize=4)
def _index(path: str) -> dict[str, dict[str, str]]:
    return {r["address"]: r for r in _load(path).iter_rows(named=True)}


def load_labels(path: str | Path | None = None) -> pl.DataFrame:
    """All labels: ``address`` (lower-case 0x), ``name``, ``category`` (one of CATEGORIES), ``source``.

    One row per address; where sources disagree the most severe category was kept at build time.
    Cached: the frame is shared, treat it as read-only.
    """
    return _load(str(path or LABELS_PATH))


def label_of(address: str, path: str | Path | None = None) -> dict[str, str] | None:
    """The label of one address (any case) as ``{address, name, category, source}``, or None if unlabelled."""
    return _index(str(path or LABELS_PATH)).get(address.lower())


def addresses_in(*categories: str, path: str | Path | None = None) -> pl.Series:
    """Lower-case addresses whose category is one of ``categories`` (for ``is_in`` filters)."""
    bad = set(categories) - set(CATEGORIES)
    if bad:
        raise ValueError(f"unknown label categories {sorted(bad)}; known: {', '.join(CATEGORIES)}")
    df = load_labels(path)
    return df.filter(pl.col("category").is_in(list(categories)))["address"]


def tag_frame(
    df: pl.DataFrame | pl.LazyFrame,
    cols: tuple[str, ...] = ("from_address", "to_address"),
    path: str | Path | None = None,
) -> pl.DataFrame | pl.LazyFrame:
    """Add ``<col>_label`` and ``<col>_category`` for each address column (null where unlabelled).

    Matching is case-insensitive; the input's row order and columns are kept. Works lazily on a LazyFrame
    so forensics queries can tag a lake scan without collecting it first.
    """
    labels = load_labels(path).select("address", "name", "category")
    lazy = isinstance(df, pl.LazyFrame)
    out = df.lazy()
    for c in cols:
        lab = labels.lazy().rename({"address": f"__{c}_key", "name": f"{c}_label", "category": f"{c}_category"})
        out = out.with_columns(pl.col(c).str.to_lowercase().alias(f"__{c}_key"))
        out = out.join(lab, on=f"__{c}_key", how="left", maintain_order="left").drop(f"__{c}_key")
    return out if lazy else out.collect()
