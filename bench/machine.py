"""What the numbers were measured on, and how fast this machine multiplies fp32 matrices."""

from __future__ import annotations

import os
import platform
import time

import torch

# Flags that decide which matrix kernels a CPU can run.
KEY_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    """CPU model, core count and ISA flags from /proc/cpuinfo (Linux), else ``platform``."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in {"", platform.machine()}:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "key_flags": [flag for flag in KEY_FLAGS if flag in flags],
        "flags": flags,
    }


def machine_info() -> dict:
    """Everything a result needs to be comparable: CPU/GPU, versions, thread count."""
    import transformers

    info = {"platform": platform.platform(), "python": platform.python_version()}
    info |= {"torch": torch.__version__, "transformers": transformers.__version__}
    info |= cpu_info()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["load_average"] = load_average()
    return info


def load_average() -> list[float] | None:
    """1/5/15-minute load: timings taken while other work shares the cores are not comparable."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def machine_name(info: dict) -> str:
    """A file-name-safe id: GPU name, else CPU model and core count."""
    label = info["gpu"] or f"{info['cpu']}-{info['cores']}core"
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def matmul_gflops(
    size: int, dtype: torch.dtype = torch.float32, repeats: int = 5, clock=time.perf_counter
) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``size`` x ``size`` matrix product (2 n^3 FLOPs)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        torch.matmul(a, b)
        best = min(best, clock() - start)
    return 2 * size**3 / best / 1e9


def fp32_peak_gflops() -> dict:
    """The machine's fp32 matmul peak: the best of a few large square products in wall time
    (all threads), and per core in CPU time on one thread, which other processes sharing the
    cores disturb far less than wall time."""
    sizes = (1024, 2048, 3072, 4096)
    measured = {size: matmul_gflops(size, repeats=10) for size in sizes}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        per_core = max(
            matmul_gflops(size, repeats=10, clock=time.thread_time) for size in (1024, 2048)
        )
    finally:
        torch.set_num_threads(threads)
    return {"gflops": max(measured.values()), "by_size": measured, "per_core_cpu_gflops": per_core}


def encoder_flops(config, batches: list[list[int]], packed: bool = False) -> float:
    """Forward FLOPs of a BERT-style encoder + 1-logit head over batches of row lengths.

    Per layer (h = hidden, f = intermediate size; 2 FLOPs per multiply-add), a token costs
    8 h^2 in the Q, K, V and output projections and 4 h f in the feed-forward; attention costs
    4 W h per query row over a padded width W. Padded (the sample handler, Hugging Face):
    every row is padded to its batch's longest. ``packed`` (``PackedEncoder``): projections
    and feed-forward see real tokens only, and the last layer computes K and V for every token
    but queries, output and feed-forward for the first row of each pair. Head: 2 h^2 + 2 h per
    row.
    Embeddings, layer norms, softmax and activations are left out (memory-bound, <3%).
    """
    h, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    total = 0
    for lengths in batches:
        rows, width = len(lengths), max(lengths)
        tokens = sum(lengths) if packed else rows * width
        attention = 4 * rows * width * width * h
        if packed:
            total += (layers - 1) * (tokens * (8 * h * h + 4 * h * f) + attention)
            total += tokens * 4 * h * h + rows * (4 * h * h + 4 * h * f) + attention // width
        else:
            total += layers * (tokens * (8 * h * h + 4 * h * f) + attention)
        total += rows * (2 * h * h + 2 * h)
    return float(total)


def decoder_flops(
    config, batches: list[tuple[list[int], int, bool]], card: bool
) -> dict[str, float]:
    """Forward FLOPs of a Llama-family decoder scoring rows at their last token, and the part
    spent in the vocabulary-wide head: ``{"total": ..., "head": ...}``.

    ``batches``: (row lengths, tokens shared by every row, whether those came computed from an
    earlier pass) per forward pass. A token costs
    4 h q + 4 h k in the Q, K, V and output projections (q, k: query and key-value widths,
    heads x head size) and 6 h f in the gated feed-forward; attention 4 q W per query row
    over W keys. ``card`` (the model card's computation): every row padded to the batch's
    longest, every layer for every position, and the head (2 h V, V the vocabulary) at every
    position. Ours (``PackedDecoder``): the shared start once (not at all when kept from an
    earlier pass), each row's own tokens, the last
    layer's queries, output and feed-forward for the last token only, one head row (2 h).
    Embeddings, norms, rotary, softmax and activations are left out (memory-bound).
    """
    h, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q = config.num_attention_heads * head_dim
    k = config.num_key_value_heads * head_dim
    per_token = 4 * h * q + 4 * h * k + 6 * h * f
    total = head = 0.0
    for lengths, shared, kept in batches:
        rows = len(lengths)
        if card:
            width = max(lengths)
            positions = rows * width
            total += layers * (positions * per_token + positions * 4 * q * width)
            head += positions * 2 * h * config.vocab_size
            continue
        own = [length - shared for length in lengths]
        width = max(own)
        computed = 0 if kept else shared
        tokens = computed + sum(own)
        attention = 4 * q * (rows * width * (shared + width) + computed * shared)
        total += (layers - 1) * (tokens * per_token + attention)
        total += tokens * 4 * h * k + rows * (4 * h * q + 6 * h * f + 4 * q * (shared + width))
        head += rows * 2 * h
    return {"total": total + head, "head": head}
