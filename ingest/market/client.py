"""The ccxt exchange: connecting (keys from the environment, URLs re-pointed), and checking what the user asked for.

Exchange ids, symbols and timeframes are checked at start against ``ccxt.exchanges`` and the exchange's
markets; an unknown one is a :class:`~continuum.errors.UserError` naming the closest valid choices.
API keys come only from the environment (``CONTINUUM_EXCHANGE_API_KEY``, ``CONTINUUM_EXCHANGE_SECRET``,
``CONTINUUM_EXCHANGE_PASSWORD``) and are never logged or printed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from continuum.errors import UserError
from continuum.redact import mask_url
from continuum.timeframes import timeframe_ms

ENV_KEYS = {
    "apiKey": "CONTINUUM_EXCHANGE_API_KEY",
    "secret": "CONTINUUM_EXCHANGE_SECRET",
    "password": "CONTINUUM_EXCHANGE_PASSWORD",
}


def check_exchange_id(exchange_id: str) -> str:
    """The ccxt id, or a UserError naming the closest ids (typos are the common case)."""
    import ccxt

    eid = exchange_id.strip().lower()
    if eid in ccxt.exchanges:
        return eid
    close = difflib.get_close_matches(eid, ccxt.exchanges, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else "; see `python -c 'import ccxt; print(ccxt.exchanges)'`"
    raise UserError(f"unknown exchange {exchange_id!r}{hint}")


def override_urls(urls: Any, base: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` tree moved to ``base``'s host, keeping its path.

    ``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:8080/api/v3`` and the websocket
    ``wss://stream.binance.com:9443/ws`` becomes ``ws://127.0.0.1:8080/ws`` (``ws`` for ``http``,
    ``wss`` for ``https``): a proxy, a mirror, or the local exchange of the tests.
    """
    b = urlsplit(base if "://" in base else f"http://{base}")
    if not b.netloc:
        raise UserError(f"exchange url {mask_url(base)!r} is not like http://host:port")
    if isinstance(urls, dict):
        return {k: override_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, list):
        return [override_urls(v, base) for v in urls]
    if isinstance(urls, str) and "://" in urls:
        u = urlsplit(urls)
        secure = b.scheme in ("https", "wss")
        scheme = ("wss" if secure else "ws") if u.scheme in ("ws", "wss") else ("https" if secure else "http")
        path = b.path.rstrip("/") + u.path
        return urlunsplit((scheme, b.netloc, path, u.query, u.fragment))
    return urls


def connect(
    exchange_id: str,
    *,
    url: str | None = None,
    rate_limit: bool = True,
    pro: bool = False,
    timeout_ms: int = 10_000,
    options: dict | None = None,
) -> Any:
    """A ccxt exchange (sync, or ccxt.pro async for websockets) ready for public market data.

    Keys are read from the environment only; ``url`` re-points every API URL (see :func:`override_urls`).
    Binance is limited to its spot markets: loading its futures and margin market lists would cost extra
    requests (and need keys) for data this source never reads.
    """
    eid = check_exchange_id(exchange_id)
    if pro:
        import ccxt.pro as cx

        if eid not in cx.exchanges:
            raise UserError(f"exchange {eid!r} has no websocket API in ccxt.pro; use `continuum backfill market`")
    else:
        import ccxt as cx
    params: dict[str, Any] = {"enableRateLimit": rate_limit, "timeout": timeout_ms}
    for attr, env in ENV_KEYS.items():
        if os.environ.get(env):
            params[attr] = os.environ[env]
    opts = dict(options or {})
    if eid in ("binance", "binanceus"):
        opts.setdefault("defaultType", "spot")
        opts.setdefault("fetchMarkets", {"types": ["spot"]})
        opts.setdefault("fetchCurrencies", False)
        opts.setdefault("fetchMargins", False)
    params["options"] = opts
    ex = getattr(cx, eid)(params)
    if url:
        ex.urls["api"] = override_urls(ex.urls["api"], url)
    return ex


def check_timeframe(ex: Any, timeframe: str) -> str:
    tfs = getattr(ex, "timeframes", None) or {}
    if tfs and timeframe not in tfs:
        close = difflib.get_close_matches(timeframe, list(tfs), n=3, cutoff=0.3)
        raise UserError(f"{ex.id} has no timeframe {timeframe!r}; closest: {', '.join(close or list(tfs)[:6])}")
    timeframe_ms(timeframe)  # Continuum's own grid must know it too
    return timeframe


def check_symbols(markets: dict[str, Any], symbols: Sequence[str], exchange_id: str) -> list[str]:
    """Unified symbols as the exchange spells them; an unknown one names the closest listed markets."""
    out = []
    ids = {m.get("id"): s for s, m in markets.items() if isinstance(m, dict)}
    for raw in symbols:
        s = raw.strip().upper()
        if not s:
            continue
        if s in markets:
            out.append(s)
            continue
        if s in ids:  # an exchange id like BTCUSDT: accept it, it names exactly one market
            out.append(ids[s])
            continue
        close = difflib.get_close_matches(s, list(markets), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; {len(markets)} markets listed"
        raise UserError(f"{exchange_id} has no market {raw.strip()!r}{hint}")
    if not out:
        raise UserError("no symbols given (e.g. --symbols BTC/USDT,ETH/USDT)")
    return out


def exchange_now(ex: Any) -> int:
    """The exchange's clock in ms: an open bar is open by the exchange's time, not ours."""
    if ex.has.get("fetchTime"):
        return int(ex.fetch_time())
    return int(ex.milliseconds())
