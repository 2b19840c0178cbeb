"""``sagemaker-reranker package``: build the deterministic ``model.tar.gz``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from sagemaker_reranker.deploy.cli.options import BadInput
from sagemaker_reranker.deploy.packaging.build import Progress, human_size, package
from sagemaker_reranker.deploy.packaging.manifest import Manifest, PackageError
from sagemaker_reranker.inference.reranker_contract import DEFAULT_INSTRUCTION, SCORING_CHOICES


def model_size(manifest: Manifest) -> str:
    """``1.1 GiB of weights, 596.0 M parameters (440.1 M per token)``."""
    size = f"{human_size(manifest.weights_bytes or 0)} of weights"
    if manifest.parameters:
        size += f", {human_count(manifest.parameters)} parameters"
        if manifest.body_parameters is not None:
            size += f" ({human_count(manifest.body_parameters)} per token)"
    return size


def human_count(count: int) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)


class ProgressBars:
    """One bar per stage of ``package`` (hashing, compressing) on a terminal's stderr."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None
        self.shown = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.shown = stage, 0
            label = f"{stage} {human_size(total)}"
            self.bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def progress_for(stream: Any) -> tuple[Progress | None, ProgressBars | None]:
    """Bars on a terminal; on a pipe or a file nothing, not even the hub's download bars."""
    if stream.isatty():
        bars = ProgressBars()
        return bars, bars
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    return None, None


@click.command("package")
@click.option("--model", required=True, help="Local model directory or Hugging Face hub id.")
@click.option(
    "--revision",
    help="Hub branch, tag or commit (hub ids only); recorded as the commit it resolves to.",
)
@click.option(
    "--no-weights",
    is_flag=True,
    help="Hub ids only: leave the weights out; the endpoint downloads the recorded commit at "
    "start (needs network access, so no network isolation).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("model.tar.gz"),
    show_default=True,
    help="Archive to write.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing archive.")
@click.option(
    "--allow-pickle", is_flag=True, help="Accept pickle weights (*.bin, *.pt) when no safetensors."
)
@click.option(
    "--scoring",
    type=click.Choice(SCORING_CHOICES),
    default="auto",
    show_default=True,
    help="How pairs are scored: a classification head, or a causal LM's yes/no answer "
    "(Qwen3-Reranker). auto reads config.json; other causal LMs need yes-no.",
)
@click.option(
    "--instruction",
    help="Default instruction of prompted rerankers (yes-no, converted Qwen3 classifiers); "
    f'requests may send their own. [default: "{DEFAULT_INSTRUCTION}"]',
)
def package_command(
    model: str,
    revision: str | None,
    no_weights: bool,
    output: Path,
    force: bool,
    allow_pickle: bool,
    scoring: str,
    instruction: str | None,
) -> None:
    """Package a reranker model and the handler into a SageMaker model.tar.gz.

    Weights are baked in by default, so the endpoint starts fast, is pinned to one
    revision and runs with network isolation. The archive is byte-for-byte reproducible.

    \b
    Examples:
      sagemaker-reranker package --model BAAI/bge-reranker-base -o model.tar.gz
      sagemaker-reranker package --model ./my-finetuned-reranker -o model.tar.gz --force
      sagemaker-reranker package --model Qwen/Qwen3-Reranker-0.6B -o qwen3.tar.gz
    """
    progress, bars = progress_for(sys.stderr)
    try:
        result = package(
            model,
            output,
            revision=revision,
            weights=not no_weights,
            allow_pickle=allow_pickle,
            force=force,
            progress=progress,
            scoring=scoring,
            instruction=instruction,
        )
    except PackageError as error:
        raise BadInput(str(error)) from None
    finally:
        if bars is not None:
            bars.close()
    manifest = result.manifest
    click.echo(f"wrote   {result.path} ({human_size(result.size)})")
    click.echo(f"sha256  {result.sha256}")
    click.echo(
        f"source  {manifest.source}" + (f" @ {manifest.revision}" if manifest.revision else "")
    )
    weights = (
        "baked in"
        if manifest.weights
        else f"none (the endpoint downloads {manifest.source} @ {manifest.revision} at start)"
    )
    click.echo(f"weights {weights}")
    click.echo(f"scoring {result.kind}")
    if manifest.instruction:
        click.echo(f"instruction {manifest.instruction}")
    if manifest.weights_bytes:
        click.echo(f"size    {model_size(manifest)}")
    for name in sorted(manifest.files):
        click.echo(f"  {name}")
