"""Ethereum address parsing for user input.

Analysts paste addresses from explorers (EIP-55 mixed case), from logs (lower case) and from chat
(sometimes truncated or with a typo). A typo in a mixed-case address is caught by its EIP-55 checksum,
so we check it instead of silently lower-casing: tracing the wrong address returns a confident, empty
answer, which is worse than an error.
"""

from __future__ import annotations

import re

from continuum.errors import UserError

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")


def _checksum(lower_hex40: str) -> str:
    """EIP-55 checksum form of a lower-case 40-hex-digit address (without 0x)."""
    from eth_hash.auto import keccak  # lazy: only needed for mixed-case input

    digest = keccak(lower_hex40.encode()).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower_hex40)
    )


def parse_address(text: str) -> str:
    """Return the lower-case form of ``text`` (the lake's form) or raise :class:`UserError`.

    Accepted: ``0x`` + 40 hex digits, all lower case, all upper case, or mixed case with a valid
    EIP-55 checksum.

    >>> parse_address("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045")
    '0xd8da6bf26964af9d7eed9e03e53415d37aa96045'
    """
    s = text.strip()
    if not _HEX40.match(s):
        raise UserError(
            f"{text!r} is not an Ethereum address: expected 0x followed by 40 hex digits "
            f"(got {len(s) - 2 if s.startswith('0x') else len(s)} characters after the prefix)"
        )
    body = s[2:]
    lower = body.lower()
    if body != lower and body != body.upper() and _checksum(lower) != s:
        raise UserError(
            f"{text} fails its EIP-55 checksum (a typo?); the checksummed form of what you typed would be "
            f"{_checksum(lower)} — check the source, or paste it all in lower case to skip the check"
        )
    return "0x" + lower


def is_address(text: str) -> bool:
    """True when :func:`parse_address` would accept ``text``."""
    try:
        parse_address(text)
    except UserError:
        return False
    return True


def short(address: str | None, none: str = "—") -> str:
    """How an address is shown to a reader: ``0x64a0…c5ad``; a cluster id keeps its kind (``exchange:binance``
    whole, ``user:0x22e2…535a``); nothing is ``none``. One form for tables, graphs and messages alike."""
    if not address:
        return none
    if address.startswith("0x"):
        return f"{address[:6]}…{address[-4:]}"
    kind, _, rest = address.partition(":")
    return f"{kind}:{short(rest)}" if rest.startswith("0x") else address
