"""The baselines the handler is held to, from ``bench/reference.py`` (loaded by path: the
benchmark folder is not an installed package), so tests and benchmark share one reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "bench" / "reference.py"

_spec = importlib.util.spec_from_file_location("bench_reference", REFERENCE_FILE)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

SampleCrossEncoder = _module.SampleCrossEncoder
ModelCardYesNoReranker = _module.ModelCardYesNoReranker
