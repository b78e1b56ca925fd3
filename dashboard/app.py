"""Continuum's Streamlit dashboard: signals, memory activity, backtests/evaluation, forensics.

Start it with ``continuum dashboard`` (or ``streamlit run dashboard/app.py``); paths are read from the
environment (see :mod:`dashboard.data`). Each page is a file in ``dashboard/views/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repo root the packages live in.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

st.set_page_config(page_title="Continuum", page_icon="📈", layout="wide")

_HERE = Path(__file__).resolve().parent
signals_page = st.Page(
    str(_HERE / "views" / "signals.py"), title="Signals", icon=":material/show_chart:", url_path="signals"
)
pages = [
    signals_page,
    st.Page(str(_HERE / "views" / "memory.py"), title="Memory", icon=":material/memory:", url_path="memory"),
    st.Page(
        str(_HERE / "views" / "evaluation.py"),
        title="Backtests & evaluation",
        icon=":material/science:",
        url_path="evaluation",
    ),
    st.Page(str(_HERE / "views" / "forensics.py"), title="Forensics", icon=":material/search:", url_path="forensics"),
]


def _home() -> None:
    st.switch_page(signals_page)


# Streamlit serves the default page at "/" and answers its url_path with "Page not found": so the default is a
# hidden page that opens Signals, and every visible page, Signals included, has its own URL (/signals, /memory, ...)
pages.append(st.Page(_home, title="Signals", url_path="home", default=True, visibility="hidden"))
nav = st.navigation(pages)
with st.sidebar:
    from dashboard.data import backtest_dir, eval_dir, lake_root

    st.caption(f"lake: `{lake_root()}`  \neval: `{eval_dir()}`  \nbacktest: `{backtest_dir()}`")
nav.run()
