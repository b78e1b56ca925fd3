"""The chain source: follows an Ethereum JSON-RPC node, reorg-safe, onto the bus and into the lake.

Per block it emits a :class:`~continuum.schema.Block`, the block's top-level native ETH transfers, its ERC-20
``Transfer`` logs and its Uniswap V2/V3 ``Swap`` logs (decoded by :mod:`ingest.chain_decode`, tokens' decimals
and symbols fetched once and cached, addresses tagged with :mod:`continuum.labels`).

Reorgs. Every new block's ``parentHash`` is checked against the hash this follower recorded for the block
below, and on every poll the recorded tip is checked against the node. On a mismatch the follower walks back
to the highest block whose recorded hash the node still agrees with (the common ancestor), emits a
:class:`~continuum.schema.Retraction` for each orphaned block (newest first; the lake drops the block's rows
at once, bus consumers drop what they derived from it) and then re-emits the canonical blocks from the
ancestor up. Logs are fetched with ``eth_getLogs({"blockHash": ...})``, so a block's logs always belong to
exactly the block whose header was checked.

Provisional and final. Blocks are emitted as soon as they are seen (``final=False``, the provisional view);
once ``confirmations`` blocks sit on top, the block is emitted again with ``final=True`` (the lake keeps one
row, now final). :func:`chain_view` reads either view from the lake. A reorg deeper than ``confirmations``
is still repaired (correctness first) and logged as a warning.

Resume. The lake is the follower's memory: on start it continues after the highest block stored for the
chain and reloads the recent block hashes it needs for the parent checks, so a restart neither skips nor
repeats a block.

Transport. ``http(s)://`` URLs are polled; ``ws(s)://`` URLs subscribe to ``newHeads`` and poll only as a
fallback. Calls go through the web3 provider as raw JSON-RPC (hex strings, no HexBytes), which is also what
makes the decoding fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from continuum.errors import UserError
from continuum.lake import Lake
from continuum.schema import Block, Event, Retraction
from ingest.chain_decode import LOG_TOPICS, TokenInfo, block_event, decode_log, native_transfers, qty

log = logging.getLogger(__name__)
_BLOCK_FIELDS = tuple(f.name for f in dataclasses.fields(Block))

__all__ = [
    "RpcError",
    "Rpc",
    "RpcMetadata",
    "ChainFollower",
    "StepResult",
    "block_events",
    "apply_retraction",
    "chain_view",
    "check_address",
]


class RpcError(RuntimeError):
    """A JSON-RPC error response (the node answered, and said no)."""

    def __init__(self, method: str, code: int | None, message: str):
        self.method, self.code, self.message = method, code, message
        super().__init__(f"{method}: {message} (code {code})")


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
    usual cause; error responses are :class:`RpcError` so callers can react (e.g. split a log range).
    """

    def __init__(self, url: str, timeout_s: float = 30.0):
        self.url = url
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
            raise UserError(f"--rpc {url!r}: expected an http://, https://, ws:// or wss:// JSON-RPC URL")
        try:
            self.chain_id = qty(self.call("eth_chainId", []))
        except RpcError as e:
            raise UserError(f"--rpc {url}: the node answered eth_chainId with an error: {e.message}") from None
        except UserError:
            raise
        except Exception as e:  # connection refused, DNS, TLS, timeout: all "cannot reach"
            raise UserError(f"--rpc {url}: cannot reach a JSON-RPC node there ({_reason(e)})") from None

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
            raise UserError(f"--rpc {self.url}: cannot open a websocket there ({type(e).__name__}: {e})") from None
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
    def _request(self, method: str, params: list) -> dict:
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


def _reason(e: BaseException) -> str:
    """The useful tail of a connection error ("[Errno 111] Connection refused"), not urllib3's whole repr."""
    m = re.search(r"\[Errno -?\d+\][^'\")]*", str(e))
    return m.group(0).strip() if m else f"{type(e).__name__}: {str(e)[:200]}"


# keccak selectors of the view functions read for metadata
_SEL = {"decimals": "0x313ce567", "symbol": "0x95d89b41", "token0": "0x0dfe1681", "token1": "0xd21220a7"}


class RpcMetadata:
    """Token decimals/symbols and pool tokens read from the node with ``eth_call``, cached for the process.

    A token that does not answer ``decimals()`` keeps unknown decimals (raw units downstream); ``symbol()``
    may return a string or a bytes32 (MKR, SAI), both are read.
    """

    def __init__(self, rpc: Rpc, known: dict[str, TokenInfo] | None = None):
        self.rpc = rpc
        self._tokens: dict[str, TokenInfo] = dict(known or {})
        self._pools: dict[str, tuple[str, str] | None] = {}

    def _eth_call(self, to: str, fn: str) -> str | None:
        try:
            out = self.rpc.call("eth_call", [{"to": to, "data": _SEL[fn]}, "latest"])
        except RpcError:
            return None
        return out if out and out != "0x" else None

    def token(self, address: str) -> TokenInfo:
        a = address.lower()
        if a not in self._tokens:
            dec = self._eth_call(a, "decimals")
            sym = self._eth_call(a, "symbol")
            decimals = qty(dec) if dec and len(dec) == 66 and qty(dec) <= 255 else None
            self._tokens[a] = TokenInfo(_symbol(sym), decimals)
        return self._tokens[a]

    def pool_tokens(self, pool: str) -> tuple[str, str] | None:
        p = pool.lower()
        if p not in self._pools:
            t0, t1 = self._eth_call(p, "token0"), self._eth_call(p, "token1")
            ok = t0 and t1 and len(t0) == 66 and len(t1) == 66
            self._pools[p] = ("0x" + t0[-40:], "0x" + t1[-40:]) if ok else None
        return self._pools[p]


def _symbol(raw: str | None) -> str | None:
    if not raw:
        return None
    b = bytes.fromhex(raw[2:])
    try:
        from eth_abi import decode

        s = decode(["string"], b)[0]
    except Exception:  # not an ABI string: a bytes32 symbol
        s = b[:32].rstrip(b"\0").decode("utf-8", "replace")
    s = "".join(ch for ch in s if ch.isprintable()).strip()
    return s[:32] or None


def block_events(
    rpc: Rpc,
    block: dict,
    logs: list[dict],
    chain: str,
    meta: RpcMetadata,
    final: bool = False,
) -> list[Event]:
    """The events of one full block given its logs: Block, native transfers (successful txs), transfers, swaps."""
    value_txs = [tx["hash"] for tx in block["transactions"] if qty(tx["value"]) and tx.get("to")]
    failed: set[str] = set()
    if value_txs:
        receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in value_txs])
        failed = {r["transactionHash"].lower() for r in receipts if r and qty(r.get("status", "0x1")) == 0}
    ts = qty(block["timestamp"]) * 1000
    out: list[Event] = [block_event(block, chain, final)]
    out += native_transfers(block, chain, failed)
    for lg in sorted(logs, key=lambda x: qty(x["logIndex"])):
        if lg.get("removed"):
            continue
        ev = decode_log(lg, chain, ts, meta)
        if ev is not None:
            out.append(ev)
    return out


def apply_retraction(lake: Lake, r: Retraction) -> int:
    """Drop every lake row derived from the orphaned block ``r`` (blocks, transfers, swaps). Returns rows removed."""
    n = lake.delete("block", (pl.col("chain") == r.chain) & (pl.col("hash") == r.block_hash))
    for kind in ("transfer", "swap"):
        n += lake.delete(kind, (pl.col("chain") == r.chain) & (pl.col("block_hash") == r.block_hash))
    return n


def chain_view(lake: Lake, kind: str, chain: str, final_only: bool = False) -> pl.DataFrame:
    """Lake rows of ``kind`` (block, transfer, swap) for ``chain``: all (provisional view) or final blocks only."""
    lf = lake.scan(kind, chain=chain)
    if not lf.collect_schema().names():
        return pl.DataFrame()
    if not final_only:
        return lf.collect()
    if kind == "block":
        return lf.filter(pl.col("final")).collect()
    fin = lake.scan("block", chain=chain).filter(pl.col("final")).select(pl.col("hash").alias("block_hash"))
    return lf.join(fin, on="block_hash", how="semi").collect()


@dataclass
class StepResult:
    """What one poll did: blocks emitted (by number), blocks retracted, blocks finalised, the node's head."""

    head: int
    emitted: list[int] = field(default_factory=list)
    retracted: list[int] = field(default_factory=list)
    finalized: list[int] = field(default_factory=list)


class ChainFollower:
    """Follows one chain: :meth:`step` does one poll; :meth:`run` loops. See the module docstring."""

    def __init__(
        self,
        rpc: Rpc,
        chain: str = "ethereum",
        lake: Lake | None = None,
        publish: Callable[[Event], None] | None = None,
        flush: Callable[[], None] | None = None,
        confirmations: int = 12,
        from_block: int | None = None,
        addresses: list[str] | None = None,
        window: int = 256,
        max_blocks_per_step: int = 100,
    ):
        self.rpc, self.chain, self.lake = rpc, chain, lake
        self._publish, self._flush = publish, flush
        self.confirmations, self.window, self.max_blocks = (
            confirmations,
            max(window, confirmations + 2),
            max_blocks_per_step,
        )
        self.addresses = addresses
        self.meta = RpcMetadata(rpc)
        self._blocks: dict[int, Block] = {}  # recent canonical blocks we emitted, by number
        self._final_upto = -1
        self.next_block = self._resume(from_block)

    # ---------------------------------------------------------------- state
    def _resume(self, from_block: int | None) -> int:
        if self.lake is not None:
            lf = self.lake.scan("block", chain=self.chain)
            if lf.collect_schema().names():
                df = lf.sort("number").tail(self.window).collect()
                if df.height:
                    for r in df.iter_rows(named=True):
                        self._blocks[r["number"]] = Block(**{k: r[k] for k in _BLOCK_FIELDS if k in r})
                    finals = df.filter(pl.col("final"))["number"]
                    self._final_upto = int(finals.max()) if finals.len() else -1
                    last = int(df["number"].max())
                    if from_block is None or from_block <= last + 1:
                        return last + 1
                    self._blocks.clear()  # a jump forward: the stored tip is not our parent any more
        if from_block is not None:
            return from_block
        return self.rpc.head()

    @property
    def tip(self) -> int | None:
        return max(self._blocks) if self._blocks else None

    def _emit(self, events: list[Event]) -> None:
        if not events:
            return
        if self.lake is not None:
            self.lake.append_events(events)
        if self._publish is not None:
            for e in events:
                self._publish(e)
            if self._flush is not None:
                self._flush()

    # ---------------------------------------------------------------- reorgs
    def _node_hash(self, number: int) -> str | None:
        b = self.rpc.block(number, full=False)
        return None if b is None else b["hash"].lower()

    def _rewind(self, res: StepResult) -> None:
        """Walk back to the common ancestor; retract every orphaned block above it, newest first."""
        n = self.tip
        while n is not None and n in self._blocks and self._node_hash(n) != self._blocks[n].hash:
            n -= 1
        if n is not None and n not in self._blocks and self._blocks:
            raise RuntimeError(
                f"reorg deeper than the follower's window of {self.window} blocks (below block {n + 1}); "
                "re-run `continuum backfill chain` over the affected range"
            )
        ancestor = n if n is not None else self.next_block - 1
        retractions = []
        for m in sorted((m for m in self._blocks if m > ancestor), reverse=True):
            b = self._blocks.pop(m)
            if b.final or m <= self._final_upto:
                log.warning("reorg reached final block %d (deeper than %d confirmations)", m, self.confirmations)
            retractions.append(Retraction(chain=self.chain, block_number=m, block_hash=b.hash, ts=b.ts))
            res.retracted.append(m)
        self._final_upto = min(self._final_upto, ancestor)
        for r in retractions:
            if self.lake is not None:
                apply_retraction(self.lake, r)
        if self._publish is not None:
            for r in retractions:
                self._publish(r)
            if self._flush is not None:
                self._flush()
        self.next_block = ancestor + 1
        log.info("reorg: retracted %d block(s) above common ancestor %d", len(retractions), ancestor)

    # ---------------------------------------------------------------- polling
    def _fetch(self, number: int) -> tuple[dict, list[dict]] | None:
        blk = self.rpc.block(number, full=True)
        if blk is None:
            return None
        flt: dict[str, Any] = {"blockHash": blk["hash"], "topics": [list(LOG_TOPICS)]}
        if self.addresses:
            flt["address"] = self.addresses
        return blk, self.rpc.call("eth_getLogs", [flt])

    def step(self) -> StepResult:
        """One poll: check the tip, ingest new blocks (up to ``max_blocks_per_step``), finalise deep ones."""
        head = self.rpc.head()
        res = StepResult(head=head)
        tip = self.tip
        if tip is not None and self._node_hash(tip) != self._blocks[tip].hash:
            self._rewind(res)
        pending: list[Event] = []
        while self.next_block <= head and len(res.emitted) < self.max_blocks:
            n = self.next_block
            got = self._fetch(n)
            if got is None:  # the node's head moved back under us (a reorg in progress)
                break
            blk, logs = got
            parent = self._blocks.get(n - 1)
            if parent is not None and blk["parentHash"].lower() != parent.hash:
                self._emit(pending)
                pending = []
                self._rewind(res)
                continue
            evs = block_events(self.rpc, blk, logs, self.chain, self.meta, final=head - n >= self.confirmations)
            pending += evs
            self._blocks[n] = evs[0]
            res.emitted.append(n)
            self.next_block = n + 1
        # finalise blocks that are now deep enough (re-emitted with final=True)
        for n in sorted(self._blocks):
            b = self._blocks[n]
            if head - n >= self.confirmations and not b.final:
                fb = dataclasses.replace(b, final=True)
                self._blocks[n] = fb
                pending = [e for e in pending if not (isinstance(e, Block) and e.number == n)] + [fb]
                res.finalized.append(n)
        if self._blocks:
            fin = [n for n, b in self._blocks.items() if b.final]
            self._final_upto = max([self._final_upto, *fin])
        self._emit(pending)
        for n in [n for n in self._blocks if n < (self.tip or 0) - self.window]:
            del self._blocks[n]
        return res

    def run(self, poll_s: float = 2.0, max_steps: int | None = None, stop: threading.Event | None = None) -> None:
        """Follow until ``stop`` is set or ``max_steps`` polls ran; transient network errors are retried."""
        self.rpc.subscribe_heads()
        steps, backoff = 0, poll_s
        while (max_steps is None or steps < max_steps) and not (stop and stop.is_set()):
            try:
                res = self.step()
                backoff = poll_s
            except (OSError, TimeoutError) as e:  # node restarting, network blip: retry with backoff
                log.warning("chain node unreachable (%s); retrying in %.0fs", e, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            steps += 1
            if res.emitted or res.retracted:
                log.info(
                    "head %d: +%d block(s), %d retracted, %d final",
                    res.head,
                    len(res.emitted),
                    len(res.retracted),
                    len(res.finalized),
                )
            if self.next_block <= res.head:
                continue  # catching up: no sleep
            self.rpc.wait_head(poll_s)
