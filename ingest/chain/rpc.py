"""JSON-RPC to an Ethereum node over a web3 provider: HTTP (polled) or websocket (``newHeads``).

Calls are raw JSON-RPC (hex strings, no HexBytes), which is also what makes the decoding fast. Node URLs
often carry an API key (``https://mainnet.infura.io/v3/<KEY>``, ``user:pass@``, ``?apikey=``): every
message that names the URL shows it through :func:`continuum.redact.mask_url`, and connection errors
quoted from web3 or requests are passed through :meth:`Rpc.redact`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from continuum.errors import UserError
from continuum.redact import mask_url, redact
from ingest.chain.decode import qty


class RpcError(RuntimeError):
    """A JSON-RPC error response (the node answered, and said no)."""

    def __init__(self, method: str, code: int | None, message: str):
        self.method, self.code, self.message = method, code, message
        super().__init__(f"{method}: {message} (code {code})")


class RpcUnavailable(ConnectionError):
    """The node could not be reached or did not answer (an OSError, so pollers retry it); says why, URL masked."""


def check_address(addr: str) -> str:
    """A user-given address as lower-case 0x hex; a mixed-case one must carry a valid EIP-55 checksum.

    A mistyped mixed-case address is the classic way to watch the wrong contract; all-lower or all-upper
    input has no checksum to verify and is accepted.
    """
    from eth_utils import is_checksum_address, is_hex_address

    if not is_hex_address(addr):
        raise UserError(f"{addr!r} is not an Ethereum address (expected 0x followed by 40 hex digits)")
    body = addr[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(addr):
        raise UserError(
            f"address {addr} has a bad EIP-55 checksum (a typo?); check it, or pass it all lower-case to skip the check"
        )
    return addr.lower()


class Rpc:
    """Raw JSON-RPC over a web3 provider: ``call``, ``batch``; HTTP or websocket (with ``newHeads``).

    Connection problems at start are a :class:`UserError` naming the URL, because a wrong ``--rpc`` is the
    usual cause; later ones are :class:`RpcUnavailable` (requests' own errors quote the URL, key and all).
    Error responses are :class:`RpcError` so callers can react (e.g. split a log range).
    """

    def __init__(self, url: str, timeout_s: float = 30.0):
        self.url = url
        self.shown_url = mask_url(url)  # the URL as messages show it: no keys, passwords or query values
        self.timeout_s = timeout_s
        self._heads = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme in ("http", "https"):
            from web3 import HTTPProvider

            self._provider = HTTPProvider(
                url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
            )
        elif scheme in ("ws", "wss"):
            self._start_ws()
        else:
            raise UserError(f"--rpc {self.shown_url!r}: expected an http://, https://, ws:// or wss:// JSON-RPC URL")
        try:
            self.chain_id = qty(self.call("eth_chainId", []))
        except RpcError as e:
            raise UserError(
                f"--rpc {self.shown_url}: the node answered eth_chainId with an error: {e.message}"
            ) from None
        except UserError:
            raise
        except Exception as e:  # connection refused, DNS, TLS, timeout: all "cannot reach"
            raise UserError(f"--rpc {self.shown_url}: cannot reach a JSON-RPC node there ({self._reason(e)})") from None

    def redact(self, text: str) -> str:
        """``text`` (a library's error message) without this URL's secrets, even where it quotes only the path."""
        return redact(text, self.url)

    def _reason(self, e: BaseException) -> str:
        """The useful tail of a connection error ("[Errno 111] Connection refused"), not urllib3's whole repr."""
        text = self.redact(str(e))
        if isinstance(e, RpcUnavailable):
            return text
        m = re.search(r"\[Errno -?\d+\][^'\")]*", text)
        return m.group(0).strip() if m else f"{type(e).__name__}: {text[:200]}"

    # ---------------------------------------------------------------- websocket plumbing
    def _start_ws(self) -> None:
        from web3 import AsyncWeb3, WebSocketProvider

        class ThreadedWebSocketProvider(WebSocketProvider):
            """web3 installs SIGINT/SIGTERM handlers on connect, which only the main thread may do; this
            provider lives on a background event loop, and :meth:`Rpc.close` disconnects it instead."""

            def _set_signal_handlers(self) -> None:
                pass

        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="chain-ws", daemon=True).start()

        async def connect() -> Any:
            w3 = await AsyncWeb3(ThreadedWebSocketProvider(self.url))
            return w3

        try:
            self._aw3 = asyncio.run_coroutine_threadsafe(connect(), self._loop).result(self.timeout_s)
        except Exception as e:
            why = f"{type(e).__name__}: {self.redact(str(e))}"
            raise UserError(f"--rpc {self.shown_url}: cannot open a websocket there ({why})") from None
        self._provider = self._aw3.provider

    def subscribe_heads(self) -> None:
        """Start a ``newHeads`` subscription (websocket only); :meth:`wait_head` then wakes on each new block."""
        if self._loop is None:
            return

        async def run() -> None:
            await self._aw3.eth.subscribe("newHeads")
            async for _ in self._aw3.socket.process_subscriptions():
                self._heads.set()

        asyncio.run_coroutine_threadsafe(run(), self._loop)

    def wait_head(self, timeout_s: float) -> None:
        """Sleep until a new head is announced (websocket) or ``timeout_s`` passes (the polling fallback)."""
        self._heads.wait(timeout_s)
        self._heads.clear()

    def wake(self) -> None:
        """Cut the current :meth:`wait_head` short (so a stop request is seen at once)."""
        self._heads.set()

    def close(self) -> None:
        if self._loop is not None:
            loop = self._loop
            with contextlib.suppress(Exception):  # closing a dead socket: nothing left to release
                asyncio.run_coroutine_threadsafe(self._provider.disconnect(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            self._loop = None

    # ---------------------------------------------------------------- calls
    @contextlib.contextmanager
    def _transport(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:  # requests', socket and timeout errors
            raise RpcUnavailable(self._reason(e)) from None  # the original's text (and chain) names the URL

    def _request(self, method: str, params: list) -> dict:
        with self._transport():
            if self._loop is None:
                return self._provider.make_request(method, params)
            fut = asyncio.run_coroutine_threadsafe(self._provider.make_request(method, params), self._loop)
            return fut.result(self.timeout_s)

    def call(self, method: str, params: list) -> Any:
        resp = self._request(method, params)
        if resp.get("error"):
            err = resp["error"]
            err = err if isinstance(err, dict) else {"message": str(err)}
            raise RpcError(method, err.get("code"), str(err.get("message")))
        return resp.get("result")

    def batch(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        """Several calls in one round trip (HTTP JSON-RPC batch); results in call order."""
        if not calls:
            return []
        if self._loop is not None:
            return [self.call(m, p) for m, p in calls]
        with self._transport():
            resps = self._provider.make_batch_request([(m, p) for m, p in calls])
        if isinstance(resps, dict):  # the node rejected the whole batch
            err = resps.get("error") or {}
            raise RpcError("batch", err.get("code"), str(err.get("message", resps)))
        by_id = sorted(resps, key=lambda r: r.get("id", 0))
        out = []
        for (m, _), r in zip(calls, by_id, strict=True):
            if r.get("error"):
                raise RpcError(m, r["error"].get("code"), str(r["error"].get("message")))
            out.append(r.get("result"))
        return out

    def block(self, number: int | str, full: bool = True) -> dict | None:
        tag = number if isinstance(number, str) else hex(number)
        return self.call("eth_getBlockByNumber", [tag, full])

    def head(self) -> int:
        return qty(self.call("eth_blockNumber", []))
