"""How the local server reads a request: one deadline for all of it, and strict framing.

The front is loopback-only by default, but it is still a server: every request must arrive
whole within one deadline (not one per read, which a client sending a byte at a time never
trips), its length must be stated exactly once in ASCII digits, and anything the server will
not read (a body it refuses, a ``Transfer-Encoding`` it does not speak) closes the
connection, so those bytes are never parsed as the next request. Header values that go back
out (custom attributes, the handler's content type) must be printable ASCII, and anything the
client sent is escaped before it reaches the log.
"""

from __future__ import annotations

import io
import re
import socket
import time
from dataclasses import dataclass
from email.message import Message

from sagemaker_reranker.inference.reranker_contract import CUSTOM_ATTRIBUTES, MAX_CUSTOM_ATTRIBUTES

HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")  # printable ASCII: no CR/LF to end a header
DIGITS = re.compile(r"^[0-9]{1,19}$")
UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class DeadlineSocket(io.RawIOBase):
    """A socket's reading side whose every ``recv`` waits only until ``deadline()``."""

    def __init__(self, sock: socket.socket, deadline) -> None:
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline() - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not received within its deadline")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


@dataclass(frozen=True)
class Refusal:
    """A request refused before its body is read: the status and why (the connection closes)."""

    status: int
    message: str


def body_length(headers: Message, limit: int) -> int | Refusal:
    """The body's length from ``Content-Length``, or why the request is refused unread."""
    if headers.get_all("Transfer-Encoding"):
        return Refusal(411, "Transfer-Encoding is not supported: send the body with Content-Length")
    values = headers.get_all("Content-Length") or []
    if not values:
        return Refusal(411, "Content-Length is required")
    if len(values) > 1:
        return Refusal(400, "more than one Content-Length header")
    raw = values[0].strip(" \t")
    if not DIGITS.match(raw):
        return Refusal(400, f"invalid Content-Length {escape(raw[:40])!r}: expected digits")
    length = int(raw)
    if length > limit:
        return Refusal(413, f"HTTP content length exceeded {limit} bytes.")
    return length


def has_body(headers: Message) -> bool:
    """Whether the request says a body follows (any Transfer-Encoding, or a length above 0)."""
    if headers.get_all("Transfer-Encoding"):
        return True
    return any(
        value.strip(" \t") not in ("", "0") for value in headers.get_all("Content-Length") or []
    )


def custom_attributes(headers: Message) -> str | Refusal | None:
    """The request's custom attributes, or why they are refused: at most 1,024 printable ASCII
    characters, given once (the handler may echo them into a response header)."""
    values = headers.get_all(CUSTOM_ATTRIBUTES) or []
    if not values:
        return None
    if len(values) > 1:
        return Refusal(400, f"more than one {CUSTOM_ATTRIBUTES} header")
    value = values[0]
    if len(value) > MAX_CUSTOM_ATTRIBUTES or not HEADER_VALUE.match(value):
        return Refusal(
            400,
            f"{CUSTOM_ATTRIBUTES} must be at most {MAX_CUSTOM_ATTRIBUTES} printable ASCII "
            "characters",
        )
    return value


def header_safe(value: str) -> bool:
    """Whether ``value`` can go into a response header as it is (no CR, LF or other controls)."""
    return bool(HEADER_VALUE.match(value))


def escape(text: str) -> str:
    """``text`` with every character outside printable ASCII as ``\\xNN`` (for logs)."""
    return UNPRINTABLE.sub(lambda match: _escaped(match.group()), text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
