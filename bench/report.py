"""The benchmark's markdown table and its verdict on each target (docs/performance.md)."""

from __future__ import annotations

TOLERANCE = 1e-4


def _ratio(entry: dict, other: dict) -> float:
    return entry["pairs_per_s"] / other["pairs_per_s"]


def markdown_table(report: dict) -> str:
    """One row per model x workload: throughput of each system, ratios, accuracy, peak fraction."""
    info, peak = report["machine"], report["fp32_peak"]["gflops"]
    lines = [
        f"Machine: {info['gpu'] or info['cpu']}, {info['cores']} cores "
        f"(flags: {' '.join(info['key_flags'])}), torch {info['torch']}, "
        f"{info['torch_threads']} threads; fp32 matmul peak {peak:.1f} GFLOP/s; "
        f"median of {report['repeats']} runs after warm-up (fewer once a cell's runs took "
        f"{report['cell_seconds']:.0f} s, more until they took {report['min_seconds']:.0f} s; "
        f"runs per cell sample/s-t/ours in the last column); "
        f"load average {info['load_average']} at start, {report.get('load_average_after')} at end.",
        "",
        "| model | workload | pairs | sample pairs/s | s-t pairs/s | ours pairs/s "
        "| ours/sample | ours/s-t | max abs diff vs sample (ours / s-t) "
        "| ours % peak, wall / cpu (sample) | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, workloads in report["models"].items():
        for name, row in workloads.items():
            sample, peer, ours = (
                row["systems"][s] for s in ("sample", "sentence-transformers", "ours")
            )
            lines.append(
                f"| {kind} | ({name}) {row['description']} | {row['pairs']} "
                f"| {sample['pairs_per_s']:.1f} | {peer['pairs_per_s']:.1f} "
                f"| {ours['pairs_per_s']:.1f} "
                f"| {_ratio(ours, sample):.2f}x | {_ratio(ours, peer):.2f}x "
                f"| {ours['max_abs_diff_vs_sample']:.1e} / {peer['max_abs_diff_vs_sample']:.1e} "
                f"| {100 * ours['peak_fraction']:.0f}% / {100 * ours['cpu_peak_fraction']:.0f}% "
                f"({100 * sample['peak_fraction']:.0f}% "
                f"/ {100 * sample['cpu_peak_fraction']:.0f}%) "
                f"| {'/'.join(str(len(e['times_s'])) for e in (sample, peer, ours))} |"
            )
    bf16 = report.get("bf16")
    if bf16:
        native = "has" if bf16["native_bf16"] else "has no"
        lines += [
            "",
            f"bf16: this CPU {native} native bf16 (avx512_bf16/amx_bf16); "
            f"a {bf16['matmul_size']}^2 matmul ran {bf16['bf16_gflops']:.2f} GFLOP/s in bf16 "
            f"vs {bf16['fp32_gflops']:.1f} in fp32 ({bf16['bf16_slowdown']:.0f}x slower).",
        ]
    lines += onnx_table(report)
    lines += causal_table(report)
    return "\n".join(lines)


# ours/ONNX Runtime needed per workload (issue 22): one pair 1.1x, top-20 1.2x, mixed 1.4x.
ONNX_TARGETS = {"a": 1.2, "b": 1.0, "c": 1.4, "d": 1.1}


def _onnx_cells(report: dict):
    for kind, workloads in report["models"].items():
        for name, row in workloads.items():
            if "onnxruntime" in row["systems"]:
                yield kind, name, row


def onnx_table(report: dict) -> list[str]:
    """ONNX Runtime (same tokenizer and threads; the faster of its padded and length-sorted
    feeds) against ours, with each feed's parity against the sample."""
    cells = list(_onnx_cells(report))
    if not cells:
        return []
    lines = [
        "",
        "ONNX Runtime peer (torch.onnx export, all graph optimisations, same tokenizer and "
        "threads; the faster of a padded and a length-sorted feed per cell):",
        "",
        "| model | workload | pairs | ORT pairs/s (feed) | ours pairs/s | ours/ORT | ours/ORT cpu "
        "| max abs diff vs sample (ORT padded / sorted / ours) | runs ORT padded/sorted/ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, name, row in cells:
        systems = row["systems"]
        ort, ours = systems["onnxruntime"], systems["ours"]
        padded, ordered = systems["onnxruntime-padded"], systems["onnxruntime-sorted"]
        lines.append(
            f"| {kind} | ({name}) {row['description']} | {row['pairs']} "
            f"| {ort['pairs_per_s']:.1f} ({ort['feed']}) | {ours['pairs_per_s']:.1f} "
            f"| {_ratio(ours, ort):.2f}x | {_cpu_ratio(ours, ort):.2f}x "
            f"| {padded['max_abs_diff_vs_sample']:.1e} / {ordered['max_abs_diff_vs_sample']:.1e} "
            f"/ {ours['max_abs_diff_vs_sample']:.1e} "
            f"| {'/'.join(str(len(e['times_s'])) for e in (padded, ordered, ours))} |"
        )
    return lines


def onnx_checks(report: dict) -> list[tuple]:
    """ours/ORT per ``ONNX_TARGETS``, and the peer's own parity (a wrong export is no peer)."""
    checks = []
    for kind, name, row in _onnx_cells(report):
        ort, ours = row["systems"]["onnxruntime"], row["systems"]["ours"]
        need = ONNX_TARGETS.get(name, 1.0)
        label = f"{kind} ({name}) ours/ORT >= {need}"
        checks.append((label, _ratio(ours, ort), need, _cpu_ratio(ours, ort)))
        diff = max(
            row["systems"][f"onnxruntime-{feed}"]["max_abs_diff_vs_sample"]
            for feed in ("padded", "sorted")
        )
        checks.append((f"{kind} ({name}) ORT max abs diff <= 1e-4", -diff, -TOLERANCE, None))
    return checks


def causal_table(report: dict) -> list[str]:
    """The LLM reranker cells: the model card's computation vs ours, and the share of the
    card's FLOPs spent in the vocabulary-wide head (which ours never computes)."""
    causal = report.get("causal", {})
    cells = [(kind, key, row) for kind, rows in causal.items() for key, row in rows.items()]
    if not cells:
        return []
    lines = [
        "",
        "LLM rerankers (yes/no, Qwen3-Reranker's prompt), max_length 512: the model card's "
        "computation (one left-padded batch, full vocabulary head) vs ours, same model object.",
        "",
        "| model | layers | workload | pairs | card pairs/s | ours pairs/s | ours/card "
        "| max abs diff vs card | card's FLOPs in the head | GFLOP card / ours "
        "| % peak card / ours | runs |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, key, row in cells:
        card, ours = row["systems"]["card"], row["systems"]["ours"]
        lines.append(
            f"| {kind} | {row['layers']} | ({key.split('@')[0]}) {row['description']} "
            f"| {row['pairs']} | {card['pairs_per_s']:.2f} | {ours['pairs_per_s']:.2f} "
            f"| {_ratio(ours, card):.2f}x | {ours['max_abs_diff_vs_card']:.1e} "
            f"| {100 * row['head_share_of_card']:.0f}% "
            f"| {card['gflop']:.0f} / {ours['gflop']:.0f} "
            f"| {100 * card['peak_fraction']:.0f}% / {100 * ours['peak_fraction']:.0f}% "
            f"| {len(card['times_s'])}/{len(ours['times_s'])} |"
        )
    return lines


def causal_checks(report: dict) -> list[tuple]:
    """Top-20 (a): >= 3x the card, at >= 45 % of the fp32 peak; the mixed request at its
    stated depth: >= 4x; never below 1.0x; scores within 1e-4 of the card's."""
    checks = []
    for kind, rows in report.get("causal", {}).items():
        for key, row in rows.items():
            name = key.split("@")[0]
            card, ours = row["systems"]["card"], row["systems"]["ours"]
            need = {"a": 3.0, "c": 4.0}.get(name, 1.0)
            label = f"{kind} ({name}, {row['layers']} layers) ours/card >= {need}"
            checks.append((label, _ratio(ours, card), need, _cpu_ratio(ours, card)))
            if name == "a":
                label = f"{kind} (a, {row['layers']} layers) fp32 peak fraction >= 0.45"
                checks.append((label, ours["peak_fraction"], 0.45, None))
            diff = ours["max_abs_diff_vs_card"]
            label = f"{kind} ({name}, {row['layers']} layers) max abs diff <= 1e-4"
            checks.append((label, -diff, -TOLERANCE, None))
    return checks


def _cpu_ratio(entry: dict, other: dict) -> float:
    return other["median_cpu_s"] / entry["median_cpu_s"]


def target_checks(report: dict) -> str:
    """Each fp32 target: the wall-time figure decides; the CPU-time figure (less
    disturbed by other processes on the same cores) is shown beside it."""
    checks = []
    for kind, workloads in report["models"].items():
        for name, row in workloads.items():
            sample, peer, ours = (
                row["systems"][s] for s in ("sample", "sentence-transformers", "ours")
            )
            need_sample = {"a": 1.3, "c": 5.0}.get(name, 1.0)
            need_peer = 1.2 if name == "c" else 1.0
            checks.append(
                (
                    f"{kind} ({name}) ours/sample >= {need_sample}",
                    _ratio(ours, sample),
                    need_sample,
                    _cpu_ratio(ours, sample),
                )
            )
            checks.append(
                (
                    f"{kind} ({name}) ours/s-t >= {need_peer}",
                    _ratio(ours, peer),
                    need_peer,
                    _cpu_ratio(ours, peer),
                )
            )
            diff = ours["max_abs_diff_vs_sample"]
            checks.append((f"{kind} ({name}) max abs diff <= 1e-4", -diff, -TOLERANCE, None))
            if name == "b":
                checks.append(
                    (
                        f"{kind} (b) fp32 peak fraction >= 0.60",
                        ours["peak_fraction"],
                        0.6,
                        ours["cpu_peak_fraction"],
                    )
                )
    checks += onnx_checks(report)
    checks += causal_checks(report)
    lines = ["| target | measured (wall) | in CPU time | verdict |", "|---|---:|---:|---|"]
    for label, value, need, cpu in checks:
        shown = f"{-value:.1e}" if need < 0 else f"{value:.2f}"
        cpu_shown = "" if cpu is None else f"{cpu:.2f}"
        lines.append(
            f"| {label} | {shown} | {cpu_shown} | {'met' if value >= need else 'NOT MET'} |"
        )
    return "\n".join(lines)
