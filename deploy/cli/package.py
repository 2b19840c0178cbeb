"""``sagemaker-reranker package``: build the deterministic ``model.tar.gz``."""

from __future__ import annotations

from pathlib import Path

import click

from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.deploy.packaging.manifest import PackageError


def human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@click.command("package")
@click.option("--model", required=True, help="Local model directory or Hugging Face hub id.")
@click.option("--revision", help="Hub branch, tag or commit to pin (hub ids only).")
@click.option(
    "--no-weights",
    is_flag=True,
    help="Leave the weights out: the endpoint downloads them at start (needs network access).",
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
def package_command(
    model: str,
    revision: str | None,
    no_weights: bool,
    output: Path,
    force: bool,
    allow_pickle: bool,
) -> None:
    """Package a reranker model and the handler into a SageMaker model.tar.gz.

    Weights are baked in by default, so the endpoint starts fast, is pinned to one
    revision and runs with network isolation. The archive is byte-for-byte reproducible.

    \b
    Examples:
      sagemaker-reranker package --model BAAI/bge-reranker-base -o model.tar.gz
      sagemaker-reranker package --model ./my-finetuned-reranker -o model.tar.gz --force
    """
    try:
        result = package(
            model,
            output,
            revision=revision,
            weights=not no_weights,
            allow_pickle=allow_pickle,
            force=force,
        )
    except PackageError as error:
        raise click.UsageError(str(error)) from None
    manifest = result.manifest
    click.echo(f"wrote   {result.path} ({human_size(result.size)})")
    click.echo(f"sha256  {result.sha256}")
    click.echo(
        f"source  {manifest.source}" + (f" @ {manifest.revision}" if manifest.revision else "")
    )
    weights = "baked in" if manifest.weights else "none (downloaded by the endpoint at start)"
    click.echo(f"weights {weights}")
    for name in sorted(manifest.files):
        click.echo(f"  {name}")
