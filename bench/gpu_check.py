"""``make gpu-check``: the handler's tests on a CUDA GPU in fp16, then a short fp16 benchmark.

One command on a GPU machine: it builds ``.venv-gpu`` (the project with a CUDA build of torch)
unless ``.venv`` already sees CUDA, runs ``tests/test_gpu.py`` (encoders and the LLM reranker:
packed vs padded within fp16 tolerance, the same top 3 as fp32; one worker per visible GPU,
each loaded onto its ``gpu_id``) and the benchmark with fewer
runs per cell (encoders, and Qwen3-Reranker-0.6B's widths against the model card's
computation), writing ``bench/results/<gpu name>.md``, and last the cross-request batching
cell (``bench/cross_request.py``: 16 small requests scored one by one against one call over
all their pairs), written beside it. Sized for under 8 minutes on one GPU once installed.

Without a CUDA device it says so and runs the same check's CPU path (fp32, tiny models, results
in a temp folder), so the check itself is exercised everywhere. Standard library only: it
runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_VENV = ROOT / ".venv-gpu"
GPU_BENCH = [
    "--models",
    "minilm,bge-base-random,qwen3-0.6b-random",
    "--repeats",
    "3",
    "--cell-seconds",
    "20",
    "--min-seconds",
    "1",
]
CPU_BENCH = ["--models", "tiny,tiny-qwen3", "--repeats", "1", "--cell-seconds", "2"]
GPU_CROSS_REQUEST = ["--model", "minilm", "--rounds", "10"]
CPU_CROSS_REQUEST = ["--model", "tiny", "--rounds", "2"]


def run(command: list, **options) -> int:
    print("+", " ".join(str(part) for part in command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False, **options).returncode


def sees_cuda(python: Path) -> bool:
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
    return python.is_file() and subprocess.run([python, "-c", probe], check=False).returncode == 0


def gpu_present() -> bool:
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def gpu_python() -> Path | None:
    """A Python whose torch sees CUDA: the project's ``.venv``, else ``.venv-gpu`` (built)."""
    for venv in (ROOT / ".venv", GPU_VENV):
        if sees_cuda(venv / "bin" / "python"):
            return venv / "bin" / "python"
    python = GPU_VENV / "bin" / "python"
    if not python.is_file() and run([sys.executable, "-m", "venv", GPU_VENV]) != 0:
        return None
    # The constraints pin torch's version; the default index serves its CUDA build on Linux.
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt")}
    install = [python, "-m", "pip", "install", "-q", "-e", ".[dev]"]
    if run(install, env=env) != 0 or not sees_cuda(python):
        return None
    return python


def main() -> int:
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if gpu_present():
        python = gpu_python()
        if python is None:
            print(
                "gpu-check: a GPU is present but no torch here sees it; install a CUDA build of "
                f"torch into {GPU_VENV} (see https://pytorch.org) and run make gpu-check again",
                file=sys.stderr,
            )
            return 2
        env["RERANKER_GPU_CHECK_DEVICE"] = "cuda"
        bench, out = GPU_BENCH, ROOT / "bench" / "results"
        cross = [*GPU_CROSS_REQUEST, "--json", out / "gpu-cross-request.json"]
    else:
        print("gpu-check: no CUDA device here; running the check's CPU path (fp32, tiny models)")
        if run(["make", "install"]) != 0:
            return 2
        python = ROOT / ".venv" / "bin" / "python"
        env["RERANKER_GPU_CHECK_DEVICE"] = "cpu"
        bench, out = CPU_BENCH, Path(tempfile.mkdtemp(prefix="gpu-check-"))
        cross = [*CPU_CROSS_REQUEST, "--json", out / "cross-request.json"]
    tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"]
    failed = run(tests, env=env)
    failed |= run([python, "-m", "bench.run", *bench, "--out", out], env=env)
    failed |= run([python, "-m", "bench.cross_request", *cross], env=env)
    verdict = "FAILED" if failed else "passed"
    print(f"gpu-check {verdict} in {time.perf_counter() - started:.0f} s; tables in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
