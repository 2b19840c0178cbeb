"""``package`` inputs and outputs a user gets wrong, the hub cache, and progress.

Hub models come from a Hugging Face cache built here in huggingface_hub's own layout
(blobs, a snapshot of links, refs), with the hub offline: nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from terminal import stderr_on_a_terminal

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.deploy.packaging.manifest import file_sha256, read_manifest

REPO_ID = "org/tiny-reranker"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BIN = Path(sys.executable).parent


def run_cli(*args: str):
    return CliRunner().invoke(main, ["package", *args])


def one_line_error(result, exit_code: int = 2) -> str:
    """The whole output of a refused command: one ``Error:`` line, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    return result.output


@pytest.fixture
def hub_cache(tiny_model_dir, tmp_path, monkeypatch) -> Path:
    """A cache holding the tiny model as ``REPO_ID`` at ``COMMIT``, branch main."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    storage = cache / ("models--" + REPO_ID.replace("/", "--"))
    snapshot = storage / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir()
    for path in sorted(tiny_model_dir.iterdir()):
        if path.is_file():
            blob = storage / "blobs" / file_sha256(path)
            shutil.copyfile(path, blob)
            (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


# ------------------------------------------------------------ hub ids and the cache


def test_hub_model_is_read_from_the_shared_cache(hub_cache, tiny_model_dir, tmp_path):
    before = sorted(hub_cache.rglob("*"))
    first = package(REPO_ID, tmp_path / "a.tar.gz")
    assert first.manifest.source == REPO_ID and first.manifest.revision == COMMIT
    weights = tiny_model_dir / "model.safetensors"
    assert first.manifest.files["model.safetensors"] == file_sha256(weights)
    with tarfile.open(first.path, "r:gz") as tar:
        assert tar.extractfile("model.safetensors").read() == weights.read_bytes()
    second = package(REPO_ID, tmp_path / "b.tar.gz")
    assert second.sha256 == first.sha256
    # Read in place: nothing added to the cache, no download folder beside the output.
    assert sorted(hub_cache.rglob("*")) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.tar.gz", "b.tar.gz", "hub"]


def test_a_link_out_of_the_cached_repo_is_still_refused(hub_cache, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    snapshot = next(hub_cache.glob("models--*/snapshots/*"))
    (snapshot / "special_tokens_map.json").symlink_to(secret)
    result = run_cli("--model", REPO_ID, "-o", str(tmp_path / "m.tar.gz"))
    assert "links outside" in one_line_error(result)


def test_a_model_missing_from_the_offline_cache_is_one_line(hub_cache, tmp_path):
    result = run_cli("--model", "org/not-cached", "-o", str(tmp_path / "m.tar.gz"))
    assert "cannot download org/not-cached from the Hugging Face hub" in one_line_error(result)


def test_no_weights_records_the_commit_main_resolves_to(hub_cache, tmp_path):
    out = tmp_path / "model.tar.gz"
    result = run_cli("--model", REPO_ID, "--no-weights", "-o", str(out))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert manifest.weights is False and manifest.source == REPO_ID
    # Pinned: an instance started at scale-out loads this commit, not whatever main is then.
    assert manifest.revision == COMMIT
    assert f"{REPO_ID} @ {COMMIT}" in result.output


def test_no_weights_that_cannot_be_resolved_is_one_line(hub_cache, tmp_path):
    out = tmp_path / "model.tar.gz"
    result = run_cli("--model", REPO_ID, "--no-weights", "--revision", "v2", "-o", str(out))
    assert f"cannot resolve {REPO_ID}@v2" in one_line_error(result)
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--no-weights",), "--no-weights needs a hub id"),
        (("--revision", "main"), "--revision applies to hub ids only"),
    ],
)
def test_a_local_directory_refuses_hub_only_flags(tiny_model_dir, tmp_path, flags, words):
    out = tmp_path / "model.tar.gz"
    result = run_cli("--model", str(tiny_model_dir), *flags, "-o", str(out))
    assert words in one_line_error(result)
    assert not out.exists()


# ------------------------------------------------------------- outputs and leftovers


def test_an_output_that_is_a_directory_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    result = run_cli("--model", str(tiny_model_dir), "-o", str(folder), "--force")
    assert "is a directory" in one_line_error(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert list(folder.iterdir()) == []


def test_an_unwritable_output_is_one_line(tiny_model_dir):
    result = run_cli("--model", str(tiny_model_dir), "-o", "/proc/x.tar.gz")
    assert "cannot write /proc/x.tar.gz" in one_line_error(result)


@pytest.mark.parametrize("stage", ["hashing", "compressing"])
def test_an_interrupted_package_leaves_the_old_archive_and_no_partial(
    tiny_model_dir, tmp_path, stage
):
    out = tmp_path / "model.tar.gz"
    out.write_bytes(b"the previous archive")

    def interrupt(at: str, done: int, total: int) -> None:
        if at == stage and done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        package(str(tiny_model_dir), out, force=True, progress=interrupt)
    assert out.read_bytes() == b"the previous archive"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.tar.gz"]


# ------------------------------------------------------------------------- progress


def test_progress_covers_hashing_then_compressing_every_byte(tiny_model_dir, tmp_path):
    seen: list[tuple[str, int, int]] = []
    result = package(str(tiny_model_dir), tmp_path / "m.tar.gz", progress=lambda *a: seen.append(a))
    total = sum(path.stat().st_size for path in tiny_model_dir.iterdir() if path.is_file())
    stages = [stage for stage, _, _ in seen]
    assert stages == sorted(stages, key=["hashing", "compressing"].index)
    for stage in ("hashing", "compressing"):
        done = [d for s, d, t in seen if s == stage and t == total]
        assert done[0] == 0 and done[-1] == total and done == sorted(done)
    assert result.sha256 == file_sha256(result.path)  # hashed while written, not re-read


def _package_on_a_terminal(model: Path, out: Path, cwd: Path) -> str:
    """Run ``package`` with stderr on a pseudo-terminal; everything it drew there."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "COLUMNS": "100"}
    command = ["sagemaker-reranker", "package", "--model", str(model), "-o", str(out)]
    return stderr_on_a_terminal(command, cwd=cwd, env=env)


def test_the_cli_draws_bars_on_a_terminal_and_nothing_on_a_pipe(tiny_model_dir, tmp_path):
    drawn = _package_on_a_terminal(tiny_model_dir, tmp_path / "tty.tar.gz", tmp_path)
    assert "hashing" in drawn and "compressing" in drawn and "100%" in drawn
    piped = subprocess.run(
        [BIN / "sagemaker-reranker", "package", "--model", str(tiny_model_dir), "-o", "p.tar.gz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert "hashing" not in piped.stdout and "compressing" not in piped.stdout
