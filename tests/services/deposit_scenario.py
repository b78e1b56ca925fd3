"""A transfer history with known answers for the deposit-address heuristic (forensics/clusters.py).

There is no public ground truth of exchange deposit addresses with their transfer history in this repository
(the Etherscan label file names about a dozen, and the lake has none of their transfers), so the answers are
planted: :func:`build` writes a plan of transfers between addresses whose role is known, and the plan is played
either straight into a transfer frame (:func:`to_frame`, fast, for the sensitivity sweep) or as real
transactions on an anvil node (:func:`play_on_anvil`: real gas deducted from swept ether, a real ERC-20, block
timestamps set by the node, ingested by the chain backfill).

Hot wallets are real labelled exchange addresses from ``continuum.labels`` (two each of Binance, Coinbase and
Kraken); every other address is derived from the seed. The plan holds:

- **deposit addresses** (positives): one per (customer, exchange); paid 1-4 times by the customer's 1-3
  wallets, by a payroll service or by another exchange's hot wallet (a withdrawal); each payment swept to one hot
  wallet of its exchange, ether minus the sweep's gas, tokens exactly (the exchange's deposit funder sends gas
  first). Most sweeps follow within minutes; ``slow_sweep_share`` of the deposit addresses are swept 1-4 days
  later (exchanges that sweep only above a balance), which a 12-hour window misses; some pairs of payments
  are swept together;
- **confounders** (negatives): ``direct payer`` (a long-lived wallet that pays an exchange directly, sometimes
  the exact amount it just received, among many other payments), ``otc relay`` (forwards every payment in full,
  to an exchange about a third of the time), ``slow forwarder`` (forwards everything to one exchange 2-10 days
  later), ``partial forwarder`` (forwards 30-80% within the hour), ``multi-exchange sweeper`` (a contract-like
  address sweeping every payment in full, to hot wallets of several exchanges), and ``pass-through`` (a
  customer's own fresh wallet used once: receive, forward all to an exchange within the hour, never used
  again) -- the last is indistinguishable from a deposit address by this heuristic, and is there so the
  measured precision says so;
- **senders**: customers' wallets (``entity`` = the customer), employers, merchants, a payroll service paying
  into more deposit addresses than a person has (it must link nobody), token mints from the zero address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

T0 = int(datetime(2023, 5, 1, tzinfo=UTC).timestamp() * 1000)
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
EXCHANGES = ("Binance", "Coinbase", "Kraken")
TOKEN = "TKN"  # the scenario's ERC-20 (18 decimals); its contract address is the executor's
FRAME_TOKEN = "0x" + hashlib.sha256(b"scenario-token").hexdigest()[:40]
ZERO = "0x" + "0" * 40
GAS_ETH = 21_000  # gas of a plain ether transfer
E18 = 10**18
# anvil for :func:`play_on_anvil`: any sender accepted, and a genesis block before the plan (block times only rise)
ANVIL_ARGS = ("--auto-impersonate", "--timestamp", str((T0 - 3 * DAY) // 1000))
CONFOUNDERS = ("direct payer", "otc relay", "slow forwarder", "partial forwarder", "multi-exchange sweeper")
CONFOUNDERS += ("pass-through",)


@dataclass(frozen=True)
class Move:
    """One planned transfer of ``wei`` base units (both the ether and the token have 18 decimals)."""

    ts: int
    sender: str
    to: str
    token: str  # "ETH" or TOKEN
    wei: int
    gas_price: int = 30 * 10**9  # wei per gas

    @property
    def amount(self) -> float:
        return self.wei / E18


@dataclass
class DepositScenario:
    moves: list[Move]
    truth: pl.DataFrame  # address, role, exchange, entity
    hot: dict[str, str]  # hot wallet -> exchange
    funders: dict[str, str]  # exchange -> address paying deposit addresses their gas
    balances: dict[str, float] = field(default_factory=dict)  # ether each sender starts with (no transfer)


def _addr(seed: int, *parts: Any) -> str:
    return "0x" + hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).hexdigest()[:40]


def _hot_wallets() -> tuple[dict[str, str], dict[str, str]]:
    """Two real hot wallets of each exchange in :data:`EXCHANGES` and its deposit funder (else its first wallet)."""
    from continuum.labels import load_labels
    from forensics.clusters import hot_wallets

    hot = hot_wallets().filter(pl.col("exchange").is_in(list(EXCHANGES)))
    hot = hot.filter(pl.col("name").str.contains(r"^\w+ \d+$")).sort("exchange", "address")
    picked = hot.group_by("exchange", maintain_order=True).head(2)
    wallets = dict(zip(picked["address"], picked["exchange"], strict=True))
    lab = load_labels()
    funders = {}
    for ex in EXCHANGES:
        f = lab.filter(pl.col("name").str.starts_with(f"{ex}: Deposit Funder")).sort("address")
        funders[ex] = f["address"][0] if f.height else next(a for a, e in wallets.items() if e == ex)
    return wallets, funders


class _Planner:
    """Accumulates moves and truth rows; knows each exchange's hot wallets and draws amounts and delays."""

    def __init__(self, seed: int):
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.hot, self.funders = _hot_wallets()
        self.moves: list[Move] = []
        self.truth: list[tuple[str, str, str | None, str | None]] = []
        self.balances: dict[str, float] = {}
        self.minted: set[str] = set()

    def new(self, role: str, i: int, exchange: str | None = None, entity: str | None = None) -> str:
        a = _addr(self.seed, role, i, exchange)
        self.truth.append((a, role, exchange, entity))
        return a

    def wallet_of(self, exchange: str) -> str:
        ws = sorted(a for a, e in self.hot.items() if e == exchange)
        return ws[int(self.rng.integers(len(ws)))]

    def amount(self, token: str) -> int:
        """A payment in base units: ether to 4 decimals (0.05-40), the token to 2 (10-100,000)."""
        if token == "ETH":
            return int(round(float(np.clip(self.rng.lognormal(0.0, 1.0), 0.05, 40.0)) * 10**4)) * 10**14
        return int(round(float(np.clip(self.rng.lognormal(7.5, 1.0), 10.0, 100_000.0)) * 100)) * 10**16

    def gas_price(self) -> int:
        return int(self.rng.integers(20, 121)) * 10**9

    def fund(self, sender: str, token: str) -> None:
        """Senders start with ether (a balance, no transfer) and, for the token, a mint from the zero address."""
        self.balances[sender] = 1_000.0
        if token != "ETH" and sender not in self.minted:
            self.minted.add(sender)
            self.moves.append(Move(T0 - DAY, ZERO, sender, token, 10**6 * E18))

    def pay(self, ts: int, sender: str, to: str, token: str, wei: int) -> None:
        self.fund(sender, token)
        self.moves.append(Move(ts, sender, to, token, wei, self.gas_price()))

    def forward(self, ts: int, sender: str, to: str, token: str, received: int, share: float = 1.0) -> None:
        """Forward ``share`` of ``received``; all of it means ether minus this transfer's own gas, to the wei."""
        gp = self.gas_price()
        wei = received if share == 1.0 else int(received * share)
        if token == "ETH" and share == 1.0:
            wei = received - GAS_ETH * gp
        elif token != "ETH":  # the sender needs ether for gas: a small payment first (tokens move exactly)
            self.moves.append(Move(ts - MIN, self.funders[self._exchange_of(to)], sender, "ETH", 10**16))
        self.moves.append(Move(ts, sender, to, token, wei, gp))

    def _exchange_of(self, to: str) -> str:
        return self.hot.get(to, EXCHANGES[0])


def build(
    seed: int = 7,
    customers: int = 120,
    confounders: int = 10,
    slow_sweep_share: float = 0.15,
    token_share: float = 0.3,
) -> DepositScenario:
    """A scenario over 30 days from 2023-05-01: ``customers`` exchange customers, ``confounders`` of each kind."""
    pl_ = _Planner(seed)
    rng = pl_.rng
    span = 30 * DAY
    merchants = [pl_.new("merchant", i) for i in range(40)]
    employer = pl_.new("employer", 0)
    payroll = pl_.new("payroll service", 0)
    deposits: list[tuple[str, str, str]] = []  # (address, exchange, token)

    # customers: 1-3 wallets, a deposit address at one or two exchanges
    for c in range(customers):
        entity = f"customer-{c}"
        wallets = [
            pl_.new("customer wallet", f"{c}-{k}", entity=entity)
            for k in range(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        ]
        n_ex = 2 if rng.random() < 0.2 else 1
        for ex in rng.choice(EXCHANGES, size=n_ex, replace=False):
            token = TOKEN if rng.random() < token_share else "ETH"
            dep = pl_.new("deposit", f"{c}-{ex}", exchange=str(ex), entity=entity)
            deposits.append((dep, str(ex), token))
            slow = rng.random() < slow_sweep_share
            t = T0 + int(rng.integers(0, span // 2))
            for _ in range(int(rng.integers(1, 5))):
                paid = [pl_.amount(token)]
                pl_.pay(t, str(rng.choice(wallets)), dep, token, paid[0])
                if rng.random() < 0.25:  # a second payment before the sweep: swept together
                    paid.append(pl_.amount(token))
                    pl_.pay(t + int(rng.integers(1, 10)) * MIN, str(rng.choice(wallets)), dep, token, paid[1])
                delay = (
                    int(rng.integers(1, 4) * DAY + rng.integers(0, DAY))
                    if slow
                    else int(np.clip(rng.exponential(20 * MIN), 30_000, 8 * HOUR))
                )
                sweep_at = t + 10 * MIN + delay
                pl_.forward(sweep_at, dep, pl_.wallet_of(str(ex)), token, sum(paid))
                t = sweep_at + int(rng.integers(1, 5)) * DAY
        for w in wallets:  # other activity of the customer's wallets
            for _ in range(int(rng.integers(0, 4))):
                pl_.pay(T0 + int(rng.integers(0, span)), w, str(rng.choice(merchants)), "ETH", pl_.amount("ETH") // 10)

    # payroll into many customers' deposit addresses, and withdrawals from another exchange into them
    for dep, ex, _ in [d for d in deposits if d[2] == "ETH"][:15]:
        t = T0 + span + int(rng.integers(0, 2 * DAY))
        pl_.pay(t, payroll, dep, "ETH", 3 * E18)
        pl_.forward(t + 15 * MIN, dep, pl_.wallet_of(ex), "ETH", 3 * E18)
    for i, (dep, ex, _) in enumerate([d for d in deposits if d[2] == "ETH"][15:25]):
        other = next(e for e in EXCHANGES if e != ex)
        t = T0 + span + 3 * DAY + i * HOUR
        pl_.pay(t, pl_.wallet_of(other), dep, "ETH", 2 * E18)
        pl_.forward(t + 20 * MIN, dep, pl_.wallet_of(ex), "ETH", 2 * E18)

    # confounders
    for i in range(confounders):
        ex = str(rng.choice(EXCHANGES))
        # direct payer: salary, sometimes paid on in full to an exchange, and many other payments
        a = pl_.new("direct payer", i, exchange=ex)
        pl_.fund(a, "ETH")
        for _ in range(int(rng.integers(2, 5))):
            t, amt = T0 + int(rng.integers(0, span)), pl_.amount("ETH")
            pl_.pay(t, employer, a, "ETH", amt)
            pl_.pay(
                t + int(rng.integers(5, 120)) * MIN,
                a,
                pl_.wallet_of(ex),
                "ETH",
                amt if rng.random() < 0.5 else amt // 2,
            )
        for _ in range(int(rng.integers(4, 10))):
            pl_.pay(T0 + int(rng.integers(0, span)), a, str(rng.choice(merchants)), "ETH", pl_.amount("ETH") // 20)

        # OTC relay: forwards every payment in full within the hour, to an exchange about a third of the time
        a = pl_.new("otc relay", i, exchange=ex)
        for k in range(int(rng.integers(5, 13))):
            t, amt = T0 + int(rng.integers(0, span)), pl_.amount("ETH")
            pl_.pay(t, pl_.new("otc client", f"{i}-{k}"), a, "ETH", amt)
            to = pl_.wallet_of(ex) if rng.random() < 0.35 else str(rng.choice(merchants))
            pl_.forward(t + int(rng.integers(5, 60)) * MIN, a, to, "ETH", amt)

        # slow forwarder: everything to one exchange, days later
        a = pl_.new("slow forwarder", i, exchange=ex)
        t, amt = T0 + int(rng.integers(0, span // 2)), pl_.amount("ETH")
        pl_.pay(t, pl_.new("slow funder", i), a, "ETH", amt)
        pl_.forward(t + int(rng.integers(2, 11)) * DAY, a, pl_.wallet_of(ex), "ETH", amt)

        # partial forwarder: 30-80% on to an exchange within the hour
        a = pl_.new("partial forwarder", i, exchange=ex)
        t, amt = T0 + int(rng.integers(0, span)), pl_.amount("ETH")
        pl_.pay(t, pl_.new("partial funder", i), a, "ETH", amt)
        pl_.forward(t + int(rng.integers(5, 60)) * MIN, a, pl_.wallet_of(ex), "ETH", amt, float(rng.uniform(0.3, 0.8)))

        # multi-exchange sweeper: every payment in full, to hot wallets of two or three exchanges
        a = pl_.new("multi-exchange sweeper", i)
        for k, to_ex in enumerate([*EXCHANGES[: 2 + i % 2], *rng.choice(EXCHANGES, size=2)]):
            t, amt = T0 + int(rng.integers(0, span)), pl_.amount("ETH")
            pl_.pay(t, pl_.new("sweeper client", f"{i}-{k}"), a, "ETH", amt)
            pl_.forward(t + int(rng.integers(2, 30)) * MIN, a, pl_.wallet_of(str(to_ex)), "ETH", amt)

        # pass-through: a customer's own fresh wallet, used once to reach an exchange
        owner = pl_.new("customer wallet", f"pt-{i}", entity=f"pt-owner-{i}")
        a = pl_.new("pass-through", i, exchange=ex, entity=f"pt-owner-{i}")
        t, amt = T0 + int(rng.integers(0, span)), pl_.amount("ETH")
        pl_.pay(t, owner, a, "ETH", amt)
        pl_.forward(t + int(rng.integers(2, 60)) * MIN, a, pl_.wallet_of(ex), "ETH", amt)

    for hw, ex in pl_.hot.items():
        pl_.truth.append((hw, "hot wallet", ex, None))
    for ex, f in pl_.funders.items():
        if f not in pl_.hot:
            pl_.truth.append((f, "deposit funder", ex, None))
        pl_.balances[f] = 1_000.0
    for hw in pl_.hot:
        pl_.balances[hw] = 1_000.0
    for who in (employer, payroll):
        pl_.balances[who] = 10_000.0
    truth = pl.DataFrame(pl_.truth, schema=["address", "role", "exchange", "entity"], orient="row").unique(
        "address", keep="first", maintain_order=True
    )
    return DepositScenario(_unique_seconds(pl_.moves), truth, pl_.hot, pl_.funders, pl_.balances)


def _unique_seconds(moves: list[Move]) -> list[Move]:
    """Time order with one move per second (each becomes one block on a node, and block times must increase)."""
    out, last = [], -1
    for m in sorted(moves, key=lambda m: m.ts):
        s = max(m.ts // 1000, last + 1)
        last = s
        out.append(Move(s * 1000, m.sender, m.to, m.token, m.wei, m.gas_price))
    return out


# --------------------------------------------------------------------------- executors
def to_frame(s: DepositScenario) -> pl.DataFrame:
    """The plan as transfer rows with the lake's columns (native ether: ``token`` null, ``log_index`` -1)."""
    eth = [m.token == "ETH" for m in s.moves]
    return pl.DataFrame(
        {
            "ts": [m.ts for m in s.moves],
            "tx_hash": [f"0x{i:064x}" for i in range(len(s.moves))],
            "log_index": [-1 if e else 0 for e in eth],
            "token": [None if e else FRAME_TOKEN for e in eth],
            "symbol": ["ETH" if e else TOKEN for e in eth],
            "from_address": [m.sender for m in s.moves],
            "to_address": [m.to for m in s.moves],
            "value": [m.amount for m in s.moves],
            "raw_value": [str(m.wei) for m in s.moves],
        },
        schema_overrides={"token": pl.String},
    )


def play_on_anvil(s: DepositScenario, url: str) -> str:
    """Send every move as a real transaction (anvil started with :data:`ANVIL_ARGS`); returns the token's
    contract address. Block timestamps follow the plan; ether sweeps pay their own gas out of the amount."""
    from web3 import Web3

    from tests.services.anvil import artifact

    w3 = Web3(Web3.HTTPProvider(url))
    rpc = w3.provider.make_request
    me = w3.eth.accounts[0]
    rpc("evm_setNextBlockTimestamp", [hex((T0 - 2 * DAY) // 1000)])
    art = artifact("ERC20Preset")
    txh = (
        w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        .constructor("Scenario Token", TOKEN)
        .transact({"from": me, "gas": 8_000_000})
    )
    tok = w3.eth.contract(address=w3.eth.wait_for_transaction_receipt(txh).contractAddress, abi=art["abi"])
    for a, eth in s.balances.items():
        rpc("anvil_setBalance", [Web3.to_checksum_address(a), hex(int(eth * 10**18))])
    for m in s.moves:
        rpc("evm_setNextBlockTimestamp", [hex(m.ts // 1000)])
        frm = Web3.to_checksum_address(m.sender)
        to = Web3.to_checksum_address(m.to)
        wei = m.wei
        if m.token == "ETH":
            txh = w3.eth.send_transaction(
                {"from": frm, "to": to, "value": wei, "gas": GAS_ETH, "gasPrice": m.gas_price}
            )
        elif m.sender == ZERO:
            txh = tok.functions.mint(to, wei).transact({"from": me, "gas": 200_000})
        else:
            txh = tok.functions.transfer(to, wei).transact({"from": frm, "gas": 65_000, "gasPrice": m.gas_price})
        rcpt = w3.eth.wait_for_transaction_receipt(txh)
        assert rcpt.status == 1, f"scenario move failed: {m}"
    last = w3.eth.get_block("latest")["timestamp"]
    assert last == s.moves[-1].ts // 1000, f"the node did not take the planned block times ({last})"
    return tok.address.lower()


# --------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Score:
    """Confusion counts of deposit-address detection and pairwise counts of user linking."""

    tp: int
    fp: int
    fn: int
    tn: int
    wrong_exchange: int  # true deposit addresses found, but attributed to another exchange (counted in fp and fn)
    flagged_by_role: dict[str, int]  # negatives called deposits, per role
    pair_tp: int
    pair_fp: int
    pair_fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def pair_precision(self) -> float:
        return self.pair_tp / (self.pair_tp + self.pair_fp) if self.pair_tp + self.pair_fp else 1.0

    @property
    def pair_recall(self) -> float:
        return self.pair_tp / (self.pair_tp + self.pair_fn) if self.pair_tp + self.pair_fn else 1.0


def _pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    out = set()
    for members in groups.values():
        ms = sorted(set(members))
        out |= {(a, b) for i, a in enumerate(ms) for b in ms[i + 1 :]}
    return out


def score(table: pl.DataFrame, s: DepositScenario, moves: pl.DataFrame | None = None) -> Score:
    """Score a cluster table against the plan's truth.

    Deposits: a positive is a planted deposit address; the negatives are every other unlabelled address that sent
    to a hot wallet (the confounders, which are the only ones the heuristic could mistake). Users: pairs of
    customer wallets; a true pair is two wallets of one customer that both paid into a deposit address of theirs
    (the heuristic cannot see wallets that never did), a predicted pair two wallets in one user cluster.
    """
    truth = s.truth
    found = table.filter(pl.col("role") == "deposit").select("address", pl.col("exchange").alias("found"))
    dep = truth.filter(pl.col("role") == "deposit").join(found, on="address", how="left")
    right = dep.filter(pl.col("found") == pl.col("exchange")).height
    wrong = dep.filter(pl.col("found").is_not_null() & (pl.col("found") != pl.col("exchange"))).height
    frame = moves if moves is not None else to_frame(s)
    senders_to_hot = set(frame.filter(pl.col("to_address").is_in(list(s.hot)))["from_address"])
    neg = truth.filter((pl.col("role") != "deposit") & pl.col("address").is_in(list(senders_to_hot)))
    neg = neg.filter(~pl.col("role").is_in(["hot wallet", "deposit funder"]))
    flagged = neg.join(found, on="address", how="semi")
    by_role = dict(flagged.group_by("role").len().iter_rows())
    # users
    deposit_entity = dict(zip(dep["address"], dep["entity"], strict=True))
    wallets = truth.filter(pl.col("role") == "customer wallet")
    entity_of = dict(zip(wallets["address"], wallets["entity"], strict=True))
    paid = frame.filter(
        pl.col("from_address").is_in(list(entity_of)) & pl.col("to_address").is_in(list(deposit_entity))
    )
    seen: dict[str, list[str]] = {}
    for frm, to in paid.select("from_address", "to_address").iter_rows():
        if deposit_entity[to] == entity_of[frm]:
            seen.setdefault(entity_of[frm], []).append(frm)
    true_pairs = _pairs(seen)
    users = table.filter(pl.col("kind") == "user")
    pred_pairs = _pairs(dict(users.group_by("cluster_id").agg("address").iter_rows()))
    return Score(
        tp=right,
        fp=wrong + flagged.height,
        fn=dep.height - right,
        tn=neg.height - flagged.height,
        wrong_exchange=wrong,
        flagged_by_role=by_role,
        pair_tp=len(true_pairs & pred_pairs),
        pair_fp=len(pred_pairs - true_pairs),
        pair_fn=len(true_pairs - pred_pairs),
    )
