"""A real webhook receiver for the alert tests: an HTTP server on 127.0.0.1 that records every POST.

It answers 200 unless told otherwise: :meth:`Receiver.script` queues replies (status, headers, body, a delay,
or an event to hold the request on until the test releases it) that the next requests get in order. Every
request is recorded when it arrives, before it is answered, as a webhook service would act on it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0  # sleep before answering (a slow or hanging webhook)
    hold: threading.Event | None = None  # answer only once this is set (or after 60 s)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    t: float  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")


class Receiver:
    """``with Receiver() as r: ... r.url("/hook") ... r.requests``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers), body, time.monotonic()))
                    reply = receiver._replies.pop(0) if receiver._replies else Reply()
                    receiver._arrived.notify_all()
                if reply.hold is not None:
                    reply.hold.wait(60)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client is gone (killed, or timed out)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def wait_for(self, n: int, timeout_s: float = 20.0) -> list[Request]:
        """Block until ``n`` requests arrived; fail with what came if it takes longer."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {n} requests arrived in {timeout_s}s")
                self._arrived.wait(left)
            return list(self.requests)

    def keys_seen(self) -> list[str]:
        """The Idempotency-Key (the alert key) of every request, in arrival order."""
        with self._lock:
            return [r.key for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
