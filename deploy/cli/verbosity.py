"""``-v`` and ``--debug``: the tool's notices and botocore's wire log on stderr, never a credential.

``-v`` shows this package's INFO records (the client's retry notices among them). ``--debug``
adds DEBUG records and botocore's and urllib3's wire log: each request's URL, headers and body
(so the documents), each response. botocore prints the request headers after signing; the
``Authorization`` header, the session token and any signature are redacted from every record,
and so is any value of the AWS credential variables. botocore's signer log (the canonical
request and string to sign) is left out whole. Every record is written as one line, its control
characters escaped (a response body may carry a forged line or a terminal escape).

Both flags go before the command's name or after it (``sagemaker-reranker status -v NAME``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

import click

from sagemaker_reranker.deploy.redaction import REDACTED, scrub, shown

PACKAGE_LOGGER = "sagemaker_reranker"
WIRE_LOGGERS = ("botocore", "urllib3")
# Signing internals and per-event noise; the signer's records hold the token in clear.
LEFT_OUT = ("botocore.auth", "botocore.hooks", "botocore.loaders")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_SECRET_HEADER = r"(?:Authorization|X-Amz-Security-Token|X-Amz-Signature|X-Amz-Credential)"
PATTERNS = (
    # 'Authorization': b'AWS4-HMAC-SHA256 ...' in a repr of the headers.
    re.compile(rf"(['\"]{_SECRET_HEADER}['\"]\s*:\s*b?)(['\"]).*?\2", re.IGNORECASE),
    # Authorization: ... as a header line; X-Amz-Signature=... in a query string.
    re.compile(rf"(\b{_SECRET_HEADER}\s*[:=]\s*)()[^\s&,'\"]+", re.IGNORECASE),
    re.compile(r"(\b(?:Signature|Credential)=)()[^\s&,'\"]+"),
)


class Redactor(logging.Filter):
    """Drops the signer's records and blanks credentials out of every other one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(LEFT_OUT):
            return False
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact(text: str) -> str:
    for pattern in PATTERNS:
        text = pattern.sub(
            lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}{match.group(2)}", text
        )
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, REDACTED)
    return scrub(text)  # secret --env values (a CreateModel body carries them)


class ClickHandler(logging.Handler):
    """Writes through ``click.echo`` to the stderr of the command being run."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(shown(self.format(record)), err=True)
        except Exception:
            self.handleError(record)


def _switch(context: click.Context, parameter: click.Parameter, value: bool) -> None:
    """Turn on the level a flag asks for, wherever it was given; the logs stay on until the
    whole command line is done, and a second flag raises the level rather than doubling lines."""
    if not value:
        return
    root = context.find_root()
    state = root.meta.setdefault(__name__, {"verbose": False, "debug": False, "undo": None})
    if state[parameter.name or ""]:
        return
    if state["undo"] is None:
        root.call_on_close(lambda: state["undo"]())
    else:
        state["undo"]()
    state[parameter.name or ""] = True
    state["undo"] = configure(state["verbose"], state["debug"])


verbose_option = click.option(
    "-v",
    "--verbose",
    is_flag=True,
    expose_value=False,
    callback=_switch,
    help="Show notices such as the client's retries.",
)
debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_switch,
    help="Also botocore's wire log: requests with their bodies (your documents) and "
    "responses; credentials redacted.",
)


def configure(verbose: bool, debug: bool) -> Callable[[], None]:
    """Turn the logs on for one command; returns what turns them off again."""
    if not (verbose or debug):
        return lambda: None
    handler = ClickHandler(logging.DEBUG)
    handler.addFilter(Redactor())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    names = (PACKAGE_LOGGER, *WIRE_LOGGERS) if debug else (PACKAGE_LOGGER,)
    changed = []
    for name in names:
        logger = logging.getLogger(name)
        changed.append((logger, logger.level))
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
        logger.addHandler(handler)

    def undo() -> None:
        for logger, level in changed:
            logger.removeHandler(handler)
            logger.setLevel(level)

    return undo
