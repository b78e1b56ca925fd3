"""URLs with their secrets masked, for log lines, printed lines and exception messages.

Node and exchange URLs often carry credentials: ``https://mainnet.infura.io/v3/<API_KEY>``,
``https://user:pass@host/rpc``, ``https://host/eth?apikey=<KEY>``, ``wss://host/ws/<TOKEN>``. Anything a
user may paste into a log or an issue goes through :func:`mask_url` (a URL we print) or :func:`redact`
(a library's message that may quote the URL, or only its path); :func:`redact_logging` does the same for
every log line, libraries' included (web3 logs the URL it connects to):

>>> mask_url("https://user:pass@mainnet.infura.io:443/v3/abcdef0123456789abcdef0123456789?apikey=XYZ")
'https://***@mainnet.infura.io:443/v3/***?apikey=***'
>>> redact("Max retries exceeded with url: /v3/0123456789abcdef?k=XYZ", "https://h/v3/0123456789abcdef?k=XYZ")
'Max retries exceeded with url: /v3/***?k=***'
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# A path segment that looks like a credential: 16+ token characters (API keys, project ids, UUIDs, hex
# tokens), or 8+ that mix letters and digits. Words like "v3", "mainnet", "ws", "rpc" stay readable.
_KEYLIKE = re.compile(r"[A-Za-z0-9_-]{16,}|(?=[^0-9]*[0-9])(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9_-]{8,}")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"`<>()\[\]]*[^\s'\"`<>()\[\].,;:!?]")


def mask_url(url: str) -> str:
    """``url`` with scheme, host and port kept and the rest that may be secret replaced by ``***``.

    Masked: the userinfo (``user:pass@``), every path segment that looks like a key, every query value
    and the fragment. A string without ``scheme://`` is read as ``host[:port]/path``.
    """
    has_scheme = "://" in url
    parts = urlsplit(url if has_scheme else f"//{url}")
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{MASK}@{host}" if "@" in parts.netloc else host
    path = "/".join(MASK if _KEYLIKE.fullmatch(seg) else seg for seg in parts.path.split("/"))
    query = "&".join(_mask_item(item) for item in parts.query.split("&")) if parts.query else ""
    out = urlunsplit((parts.scheme, netloc, path, query, MASK if parts.fragment else ""))
    return out if has_scheme else out.removeprefix("//")


def mask_webhook(url: str) -> str:
    """:func:`mask_url`, and the last path segment masked even when it does not look like a key.

    A webhook URL is a bearer credential as a whole (``https://chat.example.com/hooks/deploybot``):
    anyone who has it can post, so its path never shows, whatever it looks like.

    >>> mask_webhook("https://chat.example.com/hooks/deploybot")
    'https://chat.example.com/hooks/***'
    """
    parts = urlsplit(mask_url(url) if "://" in url else f"//{mask_url(url)}")
    head, _, last = parts.path.rpartition("/")
    path = f"{head}/{MASK}" if last and last != MASK else parts.path
    out = urlunsplit(parts._replace(path=path))
    return out if "://" in url else out.removeprefix("//")


def _mask_item(item: str) -> str:
    name, eq, _ = item.partition("=")
    return f"{name}={MASK}" if eq else MASK


def redact(text: str, *urls: str | None) -> str:
    """``text`` with every URL in it masked, and the secret parts of ``urls`` masked wherever they appear.

    For messages we do not write (an HTTP library's exception quotes a URL, or only its path and query):
    each given URL's path-and-query, userinfo, key-like path segments and query values are replaced too.
    """
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    for url in urls:
        for secret, masked in _secrets(url or ""):
            text = text.replace(secret, masked)
    return text


def _secrets(url: str) -> list[tuple[str, str]]:
    """(secret, replacement) pairs of one URL, longest first so a part never hides a whole."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    masked = urlsplit(mask_url(url) if "://" in url else f"//{mask_url(url)}")
    pairs = []
    if parts.query or parts.path:
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        pairs.append((tail, masked.path + (f"?{masked.query}" if masked.query else "")))
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo, *userinfo.split(":")] if userinfo else []
    found += [seg for seg in parts.path.split("/") if _KEYLIKE.fullmatch(seg)]
    found += [item.partition("=")[2] or item for item in parts.query.split("&") if item]
    found += [parts.fragment]
    pairs += [(s, MASK) for s in found if len(s) >= 3]
    return sorted((p for p in pairs if p[0] != p[1]), key=lambda p: -len(p[0]))


class RedactFilter(logging.Filter):
    """A handler filter that passes every record with :func:`redact` applied to its message and traceback."""

    def __init__(self, *urls: str | None):
        super().__init__()
        self.urls = urls

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), *self.urls), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, *self.urls)
        return True


def redact_logging(*urls: str | None) -> None:
    """Mask URLs, and the secrets of ``urls``, in everything the root logger's handlers write.

    Call it after ``logging.basicConfig``: the filter sits on the handlers, so records that libraries'
    loggers propagate to the root are masked too.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) and f.urls == urls for f in handler.filters):
            handler.addFilter(RedactFilter(*urls))
