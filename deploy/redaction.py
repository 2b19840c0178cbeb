"""What the command line may show: secrets in ``--env`` values never, control characters escaped.

An environment variable with ``TOKEN``, ``SECRET``, ``KEY``, ``PASSWORD`` or ``CREDENTIAL``
in its name, as a word or a word's end (``HF_TOKEN``, ``API_KEY``, ``OPENAI_APIKEY``), is a
secret. Its value still goes where it
must (the model's environment on AWS, the local server's environment), but every dry-run line,
``--json`` document and log line shows ``<redacted>`` in its place: the ``Environment`` maps
of a request are redacted by name, and any other text is scrubbed of every secret value
``parse_env`` has seen in this process. docs/security.md says how to keep such values out of
the model's environment altogether (AWS Secrets Manager).

Text that came from a server, AWS or a file (an endpoint's error, a log line, a document)
goes through ``printable`` before it reaches the terminal: a CR or LF in it would start a
forged line, and an escape sequence (``ESC ] 0; ... BEL``) would retitle or redraw the
terminal, even through a pipe into ``less -R`` or a CI log viewer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "CREDENTIAL")
REDACTED = "<redacted>"
MIN_SCRUB_LENGTH = 4  # shorter values would blank out ordinary words
# C0, DEL and C1 controls, line and paragraph separators, and the bidirectional overrides
# that make a line read otherwise than it is written.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_seen: set[str] = set()
_lock = threading.Lock()


def is_secret_name(name: str) -> bool:
    """Whether an environment variable named ``name`` holds a secret: one of its words (split
    at ``_``) ends with a secret word (or its plural, but for ``TOKENS``), so ``HF_TOKEN``,
    ``API_KEYS`` and ``OPENAI_APIKEY`` are and ``RERANKER_MAX_TOKENS`` (a count) is not."""
    words = name.upper().replace("-", "_").split("_")
    return any(
        word.endswith(secret) or (secret != "TOKEN" and word.endswith(f"{secret}S"))
        for word in words
        for secret in SECRET_WORDS
    )


def remember(env: Mapping[str, str]) -> None:
    """Note the secret values of ``env``, so ``scrub`` blanks them wherever they show up."""
    with _lock:
        _seen.update(
            value
            for name, value in env.items()
            if is_secret_name(name) and len(value) >= MIN_SCRUB_LENGTH
        )


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``<redacted>``."""
    with _lock:
        values = sorted(_seen, key=len, reverse=True)
    for value in values:
        text = text.replace(value, REDACTED)
    return text


def printable(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (``\\uNNNN``), so it shows as
    one line of plain characters; other non-ASCII (accents, CJK) stays as it is."""
    return CONTROL.sub(_escaped, text)


def shown(text: str) -> str:
    """What the terminal gets of ``text``: remembered secrets scrubbed, controls escaped."""
    return printable(scrub(text))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact(value: Any) -> Any:
    """A copy of a request's parameters fit to show: ``Environment`` maps redacted by name,
    remembered secret values scrubbed from every string."""
    if isinstance(value, Mapping):
        return {
            key: _redact_environment(item)
            if key == "Environment" and isinstance(item, Mapping)
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def _redact_environment(env: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: REDACTED if is_secret_name(name) and value else redact(value)
        for name, value in env.items()
    }
