"""The handler's settings: environment variables read once by ``model_fn``, and their defaults.

Measured figures behind the defaults are in docs/performance.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from reranker_contract import MAX_INSTRUCTION_CHARS, SCORING_CHOICES

DEFAULT_MODEL_ID = "BAAI/bge-reranker-base"
DEFAULT_MAX_LENGTH = 512  # encoders
DEFAULT_PROMPT_MAX_LENGTH = 8192  # prompted rerankers, prompt included
DEFAULT_MAX_PAIRS = 1024
# Real (unpadded) tokens per request: ~2 s of bge-reranker-base on an A10G, minutes on a small
# CPU; the deploy command lowers it for CPU instance types.
DEFAULT_MAX_TOKENS = 262_144
# Padded tokens per micro-batch. On CPU a pass's activations should stay in the last-level
# cache (2,048 ran 10-25 % faster than 8,192 on a 2-core EPYC, docs/performance.md); a GPU
# stays busy with larger passes, and its memory, not a cache, is the limit.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32768}


@dataclass(frozen=True)
class Settings:
    """Handler settings, read once from the environment by ``model_fn``."""

    model_id: str
    revision: str | None
    dtype: str | None
    trust_remote_code: bool
    max_length: int | None
    batch_tokens: int | None
    max_pairs: int
    max_tokens: int
    packed: bool
    allow_pickle: bool = False
    scoring: str = "auto"
    instruction: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            model_id=env.get("RERANKER_MODEL_ID", DEFAULT_MODEL_ID),
            revision=env.get("RERANKER_MODEL_REVISION") or None,
            dtype=env.get("RERANKER_DTYPE") or None,
            trust_remote_code=env.get("RERANKER_TRUST_REMOTE_CODE", "0") == "1",
            max_length=env_int("RERANKER_MAX_LENGTH", 0) or None,
            batch_tokens=env_int("RERANKER_BATCH_TOKENS", 0) or None,
            max_pairs=env_int("RERANKER_MAX_PAIRS", DEFAULT_MAX_PAIRS),
            max_tokens=env_int("RERANKER_MAX_TOKENS", DEFAULT_MAX_TOKENS),
            packed=env.get("RERANKER_PACKED", "1") != "0",
            allow_pickle=env.get("RERANKER_ALLOW_PICKLE", "0") == "1",
            scoring=env_choice("RERANKER_SCORING", SCORING_CHOICES),
            instruction=env_instruction("RERANKER_INSTRUCTION"),
        )


def env_int(name: str, default: int) -> int:
    """A non-negative integer setting; a bad value fails loading with the setting's name."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset); anything else fails loading with the name."""
    raw = os.environ.get(name) or choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def env_instruction(name: str) -> str | None:
    """A default instruction for prompted rerankers: 1 to ``MAX_INSTRUCTION_CHARS`` characters."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_INSTRUCTION_CHARS:
        raise ValueError(f"{name} has {len(raw)} characters, over {MAX_INSTRUCTION_CHARS}")
    return raw
