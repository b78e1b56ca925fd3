"""``continuum backfill chain`` and ``continuum stream chain``: the chain source on the command line.

web3 is imported inside the run functions so ``continuum --help`` stays fast; the work is in
:mod:`ingest.chain`. RPC URLs usually carry an API key: they are only ever shown masked.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from commands.options import add_metrics_option, config_option, serve_metrics
from continuum.config import Config
from continuum.errors import UserError

BACKFILL_EPILOG = """\
examples:
  continuum backfill chain --rpc http://127.0.0.1:8545 --from-block 0 --to-block 5000
  continuum backfill chain --rpc https://eth.example/KEY --from-block 17173000 --to-block 17174000 \\
      --address 0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48   # USDC only (EIP-55 checksum verified)

Writes blocks, native ETH transfers, ERC-20 transfers and Uniswap V2/V3 swaps to the lake
(lake.root in continuum.toml). Ranges the node refuses are split automatically; blocks already in the
lake are skipped, so an interrupted backfill is resumed by running the same command again.
"""

STREAM_EPILOG = """\
examples:
  continuum stream chain --rpc http://127.0.0.1:8545 --confirmations 2
  continuum stream chain --rpc ws://127.0.0.1:8545 --from-block 120     # websocket: wakes on newHeads

Follows the head, publishing blocks, transfers and swaps to the bus (chain.blocks, chain.transfers,
chain.swaps) and the lake. Reorgs are detected by parent hash: orphaned blocks are retracted (a
`retraction` event on chain.blocks; the lake drops their rows) and the canonical ones re-emitted. A block
is final once --confirmations blocks sit on top of it (it is re-emitted with final=true). Restarting
resumes after the last block in the lake.
"""


def _common(p: argparse.ArgumentParser) -> None:
    config_option(
        p, "--rpc", key="chain.rpc", help="JSON-RPC URL: http(s):// (polled) or ws(s):// (newHeads); default chain.rpc"
    )
    config_option(
        p, "--chain", key="chain.chain", help="chain name stored with every event (default chain.chain, e.g. ethereum)"
    )
    config_option(
        p,
        "--confirmations",
        key="chain.confirmations",
        type=int,
        help="blocks on top before a block counts as final (default chain.confirmations)",
    )
    p.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="ADDR",
        help="only logs of this contract (repeatable; mixed-case input must carry a valid EIP-55 checksum)",
    )
    p.add_argument("--no-lake", action="store_true", help="do not write the lake (bus only)")


def add_backfill_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = BACKFILL_EPILOG
    _common(p)
    p.add_argument("--from-block", type=int, required=True, help="first block (inclusive)")
    p.add_argument("--to-block", help="last block (inclusive), or 'latest'", default="latest")
    p.add_argument("--batch-blocks", type=int, default=200, help="blocks per eth_getLogs query (split if refused)")
    p.add_argument("--publish", action="store_true", help="also publish the events on the bus")


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = STREAM_EPILOG
    _common(p)
    p.add_argument("--from-block", type=int, help="start here when the lake has nothing newer (default: the head)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between polls (HTTP) or fallback wake-ups (ws)")
    p.add_argument("--max-polls", type=int, help="stop after this many polls (default: run until Ctrl-C)")
    add_metrics_option(p)


def _settings(args: argparse.Namespace, cfg: Config) -> tuple[str, str, int, list[str] | None]:
    from ingest.chain import check_address

    addrs = [check_address(a) for a in args.address] or None
    return cfg.chain.rpc, cfg.chain.chain, cfg.chain.confirmations, addrs


def _lake(args: argparse.Namespace, cfg: Config):
    from continuum.lake import Lake

    return None if args.no_lake else Lake(cfg.lake.root)


def run_backfill(args: argparse.Namespace, cfg: Config) -> int:
    from tqdm import tqdm

    from continuum.redact import redact_logging
    from ingest.chain import Rpc, backfill

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    rpc_url, chain, conf, addrs = _settings(args, cfg)
    redact_logging(rpc_url)
    if args.from_block < 0:
        raise UserError(f"--from-block {args.from_block}: must be >= 0")
    rpc = Rpc(rpc_url)
    head = rpc.head()
    to = head if args.to_block == "latest" else _int_arg("--to-block", args.to_block)
    if to > head:
        raise UserError(f"--to-block {to} is beyond the node's head ({head})")
    if to < args.from_block:
        raise UserError(f"--to-block {to} is before --from-block {args.from_block}")
    bus = None
    if args.publish:
        from continuum.bus_factory import make_bus

        bus = make_bus(cfg)
    with tqdm(total=to - args.from_block + 1, unit="block", disable=None) as bar:
        st = backfill(
            rpc,
            args.from_block,
            to,
            chain=chain,
            lake=_lake(args, cfg),
            publish=bus.publish if bus else None,
            confirmations=conf,
            batch_blocks=args.batch_blocks,
            addresses=addrs,
            progress=bar.update,
        )
    if bus is not None:
        bus.flush()
    kinds = ", ".join(f"{v} {k}s" for k, v in sorted(st.by_kind.items()))
    print(
        f"{chain} {args.from_block}..{to}: {st.blocks} blocks ingested, {st.skipped} already in the lake; "
        f"{kinds or 'no events'}; {st.log_queries} eth_getLogs queries ({st.splits} splits)"
    )
    return 0


def run_stream(args: argparse.Namespace, cfg: Config) -> int:
    from continuum.bus_factory import make_bus
    from continuum.redact import redact_logging
    from ingest.chain import ChainFollower, Rpc

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rpc_url, chain, conf, addrs = _settings(args, cfg)
    redact_logging(rpc_url)  # web3 logs the URL it connects to
    rpc = Rpc(rpc_url)
    bus = make_bus(cfg)
    metrics = serve_metrics(args)
    publish = bus.publish
    if metrics is not None:

        def publish(ev, _publish=bus.publish):
            _publish(ev)
            metrics.count("continuum_events", topic=ev.TOPIC, direction="out")

    follower = ChainFollower(
        rpc,
        chain=chain,
        lake=_lake(args, cfg),
        publish=publish,
        flush=bus.flush,
        confirmations=conf,
        from_block=args.from_block,
        addresses=addrs,
    )
    if metrics is not None:
        metrics.counter_from("continuum_reconnects", lambda: follower.reconnects, source="chain")
    print(f"following {chain} at {rpc.shown_url} from block {follower.next_block} ({conf} confirmations); Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), rpc.wake()))
    try:
        follower.run(poll_s=args.poll, max_steps=args.max_polls, stop=stop)
    except KeyboardInterrupt:
        pass
    finally:
        bus.flush()
        rpc.close()
        if metrics is not None:
            metrics.close()
    print(f"stopped; next block {follower.next_block}")
    return 0


def _int_arg(name: str, v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise UserError(f"{name} {v!r}: expected a block number or 'latest'") from None
