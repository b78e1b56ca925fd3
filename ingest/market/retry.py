"""Retries of transient exchange failures: HTTP 429 (with ``Retry-After``), 5xx, timeouts, garbled pages."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("continuum.ingest.market")


def backoff(n: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before try ``n + 1``: exponential from ``base_s``, capped, with jitter."""
    return min(cap_s, base_s * 2**n) * (0.5 + random.random() / 2)


@dataclass
class Retry:
    """Backoff for transient exchange failures; ``Retry-After`` wins when the exchange sends one."""

    attempts: int = 6
    base_s: float = 0.5
    cap_s: float = 30.0
    retried: int = 0

    def delay(self, n: int, ex: Any, error: BaseException | None = None) -> float:
        import ccxt

        ra = None
        if isinstance(error, ccxt.DDoSProtection):  # 429/418: the response's headers are the fresh ones
            headers = getattr(ex, "last_response_headers", None) or {}
            ra = {k.lower(): v for k, v in headers.items()}.get("retry-after")
        if ra is not None:
            try:
                return min(float(ra), self.cap_s)
            except ValueError:
                pass
        return backoff(n, self.base_s, self.cap_s)

    @staticmethod
    def transient(e: BaseException) -> bool:
        import ccxt

        # OperationFailed is ccxt's root of "try again" errors (network, 5xx, rate limits, timeouts)
        return isinstance(e, (ccxt.OperationFailed, ccxt.BadResponse, ccxt.NullResponse))

    def _wait(self, n: int, ex: Any, e: Exception) -> float:
        """Seconds to wait after failure ``n``; re-raises ``e`` when it is not transient or tries are used up."""
        if not self.transient(e) or n == self.attempts - 1:
            raise e
        wait = self.delay(n, ex, e)
        self.retried += 1
        log.warning("%s: %s, retrying in %.1fs", ex.id, type(e).__name__, wait)
        return wait

    def call(self, ex: Any, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        for n in range(self.attempts):
            try:
                return fn(*args, **kw)
            except Exception as e:
                time.sleep(self._wait(n, ex, e))
        raise AssertionError("unreachable")

    async def acall(self, ex: Any, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        for n in range(self.attempts):
            try:
                return await fn(*args, **kw)
            except Exception as e:
                await asyncio.sleep(self._wait(n, ex, e))
        raise AssertionError("unreachable")


def checked(ex: Any, result: Any) -> Any:
    """ccxt turns a body that is not JSON into an empty list; an empty page would end a backfill early,
    so a garbled body (text received, nothing parsed) is raised as a retryable BadResponse."""
    import ccxt

    body = getattr(ex, "last_http_response", None)
    if not result and body and getattr(ex, "last_json_response", None) is None:
        try:
            json.loads(body)  # a real empty answer ("[]") is fine
        except ValueError:
            raise ccxt.BadResponse(f"{ex.id}: response is not valid JSON ({len(body)} bytes)") from None
    return result
