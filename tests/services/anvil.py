"""A real Ethereum node for the tests: anvil (Foundry) from the npm registry, real contracts from npm artifacts.

Provisioning: ``npm install`` into ``~/.cache/continuum/npm`` (override with ``CONTINUUM_NPM_CACHE``) of
``@foundry-rs/anvil-linux-amd64`` (the binary), ``@uniswap/v2-core`` and ``@uniswap/v2-periphery`` (factory,
pair, router, WETH9, the test ERC20) and ``@openzeppelin/contracts@4`` (``ERC20PresetMinterPauser``, a compiled
OpenZeppelin token with name/symbol/decimals and ``mint``). Nothing is compiled: every contract is the
published bytecode.

:func:`start_anvil` starts ``anvil --host 127.0.0.1 --port <free>`` and raises (never skips) if it does not
answer within a few seconds, so a broken setup fails the integration tests loudly.
:class:`RangeLimitProxy` sits in front of a node and refuses ``eth_getLogs`` over more than N blocks the way
hosted providers do (HTTP 200 with a JSON-RPC error), passing every other request through unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

NPM_DIR = Path(os.environ.get("CONTINUUM_NPM_CACHE", Path.home() / ".cache" / "continuum" / "npm"))
PACKAGES = (
    "@foundry-rs/anvil-linux-amd64",
    "@uniswap/v2-core@1.0.1",
    "@uniswap/v2-periphery@1.1.0-beta.0",
    "@openzeppelin/contracts@4.9.6",
)


def provision() -> Path:
    """Install the npm packages once (cached); returns the ``node_modules`` directory."""
    nm = NPM_DIR / "node_modules"
    need = [
        p
        for p in ("@foundry-rs/anvil-linux-amd64", "@uniswap/v2-core", "@uniswap/v2-periphery")
        if not (nm / p).exists()
    ]
    oz = nm / "@openzeppelin/contracts/build/contracts/ERC20PresetMinterPauser.json"
    if need or not oz.exists():
        if shutil.which("npm") is None:
            raise RuntimeError(
                "npm is not installed: the anvil tests need Node.js/npm to fetch anvil and the contracts"
            )
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        if not (NPM_DIR / "package.json").exists():
            (NPM_DIR / "package.json").write_text('{"name": "continuum-test-deps", "private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
            cwd=NPM_DIR,
            check=True,
            timeout=600,
        )
    return nm


def anvil_binary() -> Path:
    b = provision() / "@foundry-rs/anvil-linux-amd64/bin/anvil"
    if not b.exists():
        raise RuntimeError(f"anvil binary missing at {b} after npm install")
    b.chmod(0o755)
    return b


def artifact(name: str) -> dict[str, Any]:
    """ABI + bytecode of a published contract: 'UniswapV2Factory', 'UniswapV2Router02', 'WETH9', 'ERC20Preset'."""
    nm = provision()
    paths = {
        "UniswapV2Factory": nm / "@uniswap/v2-core/build/UniswapV2Factory.json",
        "UniswapV2Pair": nm / "@uniswap/v2-core/build/UniswapV2Pair.json",
        "UniswapV2Router02": nm / "@uniswap/v2-periphery/build/UniswapV2Router02.json",
        "WETH9": nm / "@uniswap/v2-periphery/build/WETH9.json",
        "ERC20Preset": nm / "@openzeppelin/contracts/build/contracts/ERC20PresetMinterPauser.json",
    }
    doc = json.loads(paths[name].read_text())
    code = doc.get("bytecode") or doc.get("evm", {}).get("bytecode", {}).get("object")
    if isinstance(code, dict):
        code = code["object"]
    return {"abi": doc["abi"], "bytecode": code if code.startswith("0x") else "0x" + code}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Anvil:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list | None = None) -> Any:
        return rpc_call(self.url, method, params or [])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def rpc_call(url: str, method: str, params: list) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        resp = json.loads(r.read())
    if "error" in resp:
        raise RuntimeError(f"{method}: {resp['error']}")
    return resp["result"]


def start_anvil(*extra: str, timeout_s: float = 10.0) -> Anvil:
    """Start anvil on a free 127.0.0.1 port (instant mining unless ``extra`` says otherwise). Raises if it fails."""
    port = free_port()
    cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--silent", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    a = Anvil(proc, port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"anvil exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            a.rpc("eth_chainId")
            return a
        except OSError:
            time.sleep(0.05)
    a.stop()
    raise RuntimeError(f"anvil did not answer on port {port} within {timeout_s}s")


@contextlib.contextmanager
def anvil(*extra: str) -> Iterator[Anvil]:
    a = start_anvil(*extra)
    try:
        yield a
    finally:
        a.stop()


class RangeLimitProxy:
    """HTTP JSON-RPC proxy that refuses ``eth_getLogs`` spanning more than ``max_blocks`` blocks.

    The refusal copies Alchemy/Infura: HTTP 200, JSON-RPC error -32005 with a "range too large" message.
    ``refused`` counts refusals so a test can prove the client split its queries.
    """

    def __init__(self, upstream: str, max_blocks: int):
        self.upstream, self.max_blocks, self.refused, self.served = upstream, max_blocks, 0, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                out = proxy._handle(json.loads(body))
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, req: Any) -> Any:
        if isinstance(req, list):
            return [self._handle(r) for r in req]
        if req.get("method") == "eth_getLogs":
            f = req["params"][0]
            if "fromBlock" in f and int(f["toBlock"], 16) - int(f["fromBlock"], 16) + 1 > self.max_blocks:
                self.refused += 1
                msg = f"query exceeds max block range {self.max_blocks}"
                return {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32005, "message": msg}}
            self.served += 1
        body = json.dumps(req).encode()
        r = urllib.request.Request(self.upstream, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=30) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Scenario:
    """Real contracts on a running anvil: WETH9, Uniswap V2 factory + router, two OpenZeppelin tokens, pools.

    Every call mines one block (anvil's automine), through web3 with anvil's unlocked dev accounts.
    ``sent`` records what the scenario did, so tests compare the lake with intent, not with the decoder.
    """

    def __init__(self, url: str):
        from web3 import Web3

        self.w3 = Web3(Web3.HTTPProvider(url))
        self.acct = [a.lower() for a in self.w3.eth.accounts]
        self.sent: dict[str, list] = {"eth": [], "token": [], "swap": []}
        self.deadline = 2**40

    def _deploy(self, name: str, *args: Any) -> Any:
        art = artifact(name)
        c = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        txh = c.constructor(*args).transact({"from": self.w3.eth.accounts[0], "gas": 8_000_000})
        rcpt = self.w3.eth.wait_for_transaction_receipt(txh)
        return self.w3.eth.contract(address=rcpt.contractAddress, abi=art["abi"])

    def _tx(self, fn: Any, sender: int = 0, value: int = 0) -> Any:
        txh = fn.transact({"from": self.w3.eth.accounts[sender], "value": value, "gas": 3_000_000})
        rcpt = self.w3.eth.wait_for_transaction_receipt(txh)
        assert rcpt.status == 1, f"scenario transaction failed: {fn.fn_name}"
        return rcpt

    def deploy(self) -> Scenario:
        """WETH9, factory, router, tokens TKA and TKB (18 decimals), liquidity in TKA/TKB and TKA/WETH."""
        e18 = 10**18
        self.weth = self._deploy("WETH9")
        self.factory = self._deploy("UniswapV2Factory", self.w3.eth.accounts[0])
        self.router = self._deploy("UniswapV2Router02", self.factory.address, self.weth.address)
        self.tka = self._deploy("ERC20Preset", "Token A", "TKA")
        self.tkb = self._deploy("ERC20Preset", "Token B", "TKB")
        me = self.w3.eth.accounts[0]
        for t in (self.tka, self.tkb):
            self._tx(t.functions.mint(me, 10**9 * e18))
            self._tx(t.functions.approve(self.router.address, 2**256 - 1))
        self._tx(self.router.functions.addLiquidity(
            self.tka.address, self.tkb.address, 100_000 * e18, 50_000 * e18, 0, 0, me, self.deadline))  # fmt: skip
        self._tx(
            self.router.functions.addLiquidityETH(self.tka.address, 100_000 * e18, 0, 0, me, self.deadline),
            value=100 * e18,
        )
        self.pair_ab = self.factory.functions.getPair(self.tka.address, self.tkb.address).call().lower()
        self.pair_aw = self.factory.functions.getPair(self.tka.address, self.weth.address).call().lower()
        return self

    def eth_transfer(self, frm: int, to: int, wei: int) -> str:
        txh = self.w3.eth.send_transaction(
            {"from": self.w3.eth.accounts[frm], "to": self.w3.eth.accounts[to], "value": wei}
        )
        self.w3.eth.wait_for_transaction_receipt(txh)
        self.sent["eth"].append((self.acct[frm], self.acct[to], wei))
        return txh.to_0x_hex()

    def token_transfer(self, token: Any, to: int, amount: int) -> None:
        self._tx(token.functions.transfer(self.w3.eth.accounts[to], amount))
        self.sent["token"].append((token.address.lower(), self.acct[0], self.acct[to], amount))

    def swap_tokens(self, amount_in: int, a_to_b: bool = True, to: int = 0) -> None:
        path = [self.tka.address, self.tkb.address] if a_to_b else [self.tkb.address, self.tka.address]
        out = self.router.functions.getAmountsOut(amount_in, path).call()[-1]
        self._tx(self.router.functions.swapExactTokensForTokens(
            amount_in, 0, path, self.w3.eth.accounts[to], self.deadline))  # fmt: skip
        self.sent["swap"].append((self.pair_ab, path[0].lower(), path[1].lower(), amount_in, out))

    def swap_eth_for_tka(self, wei: int) -> None:
        path = [self.weth.address, self.tka.address]
        out = self.router.functions.getAmountsOut(wei, path).call()[-1]
        self._tx(self.router.functions.swapExactETHForTokens(
            0, path, self.w3.eth.accounts[0], self.deadline), value=wei)  # fmt: skip
        self.sent["swap"].append((self.pair_aw, path[0].lower(), path[1].lower(), wei, out))

    def activity(self, rounds: int = 1) -> None:
        """ETH transfers, token transfers and swaps in both pools; one block per transaction."""
        e18 = 10**18
        for i in range(rounds):
            self.eth_transfer(0, 1 + i % 5, e18 // 10 * (1 + i % 3))
            self.token_transfer(self.tka, 2, 123_456 * 10**15 + i)
            self.swap_tokens((10 + i) * e18, a_to_b=i % 2 == 0)
            self.swap_eth_for_tka(e18 // 100 * (1 + i))

    def mine(self, n: int = 1) -> None:
        self.w3.provider.make_request("anvil_mine", [hex(n)])
