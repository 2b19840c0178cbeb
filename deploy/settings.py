"""``KEY=VALUE`` settings from the command line (``--env``, ``--tag``), parsed one way."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from sagemaker_reranker.deploy.redaction import remember

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_key_values(items: Iterable[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` strings into a dict (the value may be empty or hold ``=``)."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE (expected NAME=VALUE)")
        pairs[key] = value
    return pairs


def parse_env(items: Iterable[str], what: str = "--env") -> dict[str, str]:
    """Environment settings: ``NAME=VALUE`` with ``NAME`` a valid variable name.

    A bare ``NAME`` takes its value from this process's environment, so a secret such as
    ``HF_TOKEN`` need not be typed on a command line (shell history, ``ps``).
    """
    items = list(items)
    for index, item in enumerate(items):
        if "=" not in item and ENV_NAME.match(item):
            if item not in os.environ:
                raise ValueError(
                    f"{what} {item!r} is not KEY=VALUE (expected NAME=VALUE), and {item} is not "
                    "set in the environment to take its value from"
                )
            items[index] = f"{item}={os.environ[item]}"
    env = parse_key_values(items, what)
    for key in env:
        if not ENV_NAME.match(key):
            raise ValueError(
                f"{what} {key!r} is not a valid environment variable name (expected NAME=VALUE)"
            )
    remember(env)  # secret values are redacted from every output from here on
    return env
