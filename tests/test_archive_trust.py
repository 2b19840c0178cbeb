"""Honest integrity: the manifest proves an archive self-consistent, not who made it. Origin is
the archive's sha256 (``package`` prints it, ``--expect-sha256`` holds ``serve``, ``deploy``
and ``update`` to it); an archive without a manifest is used only with ``--allow-unverified``.
And ``deploy`` sizes the endpoint from the manifest before reading the rest of the archive."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import boto3
import pytest
from aws_fixtures import BUCKET, Cli, model_args
from click.testing import CliRunner
from moto_shims import backend
from test_archive_form import IMAGE, header, write
from test_deploy_sizing import QWEN3_8B, archive_claiming
from test_security_archive import rebuild

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import MANIFEST, PackageError, file_sha256
from sagemaker_reranker.deploy.packaging.verify import Trust, inspect_archive

cli = Cli()
OTHER = "0" * 64
PAYLOAD_HANDLER = b"import os\nos.system('echo owned')\n"


def serve(archive: Path, *extra: str):
    return CliRunner().invoke(main, ["serve", "--model-data", str(archive), "--port", "0", *extra])


def aws(command: str, model_data: Path | str, *extra: str):
    return cli(command, "rr", *model_args(model_data, "--image-uri", IMAGE, "--dry-run", *extra))


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error")]


def assert_refused(archive: Path, message: str, *extra: str) -> None:
    """``message`` from ``serve``, ``deploy`` and ``update`` (exit 2, one line)."""
    served = serve(archive, *extra)
    assert served.exit_code == 2, served.output
    assert served.stderr.splitlines() == [f"Error: {message}"]
    for command in ("deploy", "update"):
        result = aws(command, archive, *extra)
        assert result.exit_code == 2, result.output
        assert error_lines(result) == [f"Error: {message}; nothing was uploaded"]
    assert not backend()._models


def rehashed(archive: Path, out: Path) -> Path:
    """The handler edited and the manifest re-hashed to match: self-consistent, not ours."""
    edited = PAYLOAD_HANDLER

    def edit(name: str, data: bytes) -> bytes:
        if name == "code/inference.py":
            return edited
        if name == MANIFEST:
            manifest = json.loads(data)
            manifest["files"]["code/inference.py"] = hashlib.sha256(edited).hexdigest()
            return json.dumps(manifest).encode()
        return data

    return rebuild(archive, out, edit)


def test_package_prints_the_sha256_that_expect_sha256_takes(tiny_model_dir, tmp_path):
    out = tmp_path / "model.tar.gz"
    result = CliRunner().invoke(main, ["package", "--model", str(tiny_model_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"sha256  {file_sha256(out)}" in result.stdout.splitlines()


def test_a_rehashed_manifest_passes_the_check_but_not_expect_sha256(moto, tiny_archive, tmp_path):
    forged = rehashed(tiny_archive, tmp_path / "forged.tar.gz")
    # What the manifest cannot show: the forgery is self-consistent, and passes.
    assert (
        inspect_archive(forged).hashes["code/inference.py"]
        == hashlib.sha256(PAYLOAD_HANDLER).hexdigest()
    )
    packaged = file_sha256(tiny_archive)
    message = (
        f"{forged} has sha256 {file_sha256(forged)}, not {packaged} as --expect-sha256 says: it "
        "is not the archive `package` printed"
    )
    with pytest.raises(PackageError) as refused:
        extract_archive(forged, tmp_path / "dest", trust=Trust(expect_sha256=packaged))
    assert str(refused.value) == message
    assert list((tmp_path / "dest").iterdir()) == []
    assert_refused(forged, message, "--expect-sha256", packaged)
    # The archive `package` wrote, with its own sha256 (any case): deployed.
    planned = aws("deploy", tiny_archive, "--expect-sha256", packaged.upper())
    assert planned.exit_code == 0, planned.output


def test_an_archive_without_a_manifest_is_refused_unless_allowed(moto, tiny_archive, tmp_path):
    bare = rebuild(
        tiny_archive, tmp_path / "bare.tar.gz", lambda n, d: None if n == MANIFEST else d
    )
    message = (
        f"{bare} has no {MANIFEST}, so nothing shows its files are those `package` wrote; pass "
        "--allow-unverified to use it anyway"
    )
    assert_refused(bare, message)
    with pytest.raises(PackageError) as refused:
        extract_archive(bare, tmp_path / "dest", trust=Trust())
    assert str(refused.value) == message
    allowed = extract_archive(bare, tmp_path / "dest", trust=Trust(allow_unverified=True))
    assert (allowed / "code" / "inference.py").is_file()
    planned = aws("deploy", bare, "--allow-unverified")
    assert planned.exit_code == 0, planned.output


def test_expect_sha256_must_be_a_sha256(moto, tiny_archive):
    for value in ("abc", "g" * 64, OTHER + "0"):
        message = (
            f"Error: --expect-sha256 {value!r} is not a sha256: 64 hex digits, as `package` prints"
        )
        served = serve(tiny_archive, "--expect-sha256", value)
        assert (served.exit_code, served.stderr.splitlines()) == (2, [message])
        result = aws("deploy", tiny_archive, "--expect-sha256", value)
        assert (result.exit_code, error_lines(result)) == (2, [message])
    for flag in (("--expect-sha256", OTHER), ("--allow-unverified",)):
        served = CliRunner().invoke(main, ["serve", "--model-dir", str(tiny_archive.parent), *flag])
        assert (served.exit_code, served.stderr.splitlines()) == (
            2,
            ["Error: --expect-sha256 and --allow-unverified check an archive: use --model-data"],
        )


def test_an_s3_archive_is_held_to_the_sha256_s3_computed(moto, tiny_archive):
    sha = file_sha256(tiny_archive)
    assert cli("deploy", "first", *model_args(tiny_archive, "--image-uri", IMAGE)).exit_code == 0
    uri = f"s3://{BUCKET}/sagemaker-reranker/{sha}/model.tar.gz"
    assert aws("deploy", uri, "--expect-sha256", sha).exit_code == 0
    refused = aws("deploy", uri, "--expect-sha256", OTHER)
    assert refused.exit_code == 2
    assert error_lines(refused) == [
        f"Error: {uri} has sha256 {sha}, not {OTHER} as --expect-sha256 says: it is not the "
        "archive `package` printed"
    ]
    # Put there by other means: no checksum S3 computed, no manifest summary.
    boto3.client("s3").put_object(Bucket=BUCKET, Key="other/model.tar.gz",
                                  Body=tiny_archive.read_bytes())  # fmt: skip
    other = f"s3://{BUCKET}/other/model.tar.gz"
    unverifiable = aws("deploy", other, "--expect-sha256", sha)
    assert error_lines(unverifiable) == [
        f"Error: {other} has no whole-object SHA256 checksum in S3 to compare with "
        "--expect-sha256; deploy the local archive instead"
    ]
    bare = aws("deploy", other)
    assert bare.exit_code == 2
    assert error_lines(bare) == [
        f"Error: {other} carries no manifest summary (it was not uploaded by `deploy`), so "
        "nothing shows what it holds; pass --allow-unverified to use it anyway"
    ]
    assert aws("deploy", other, "--allow-unverified").exit_code == 0


@pytest.mark.usefixtures("moto")
def test_a_model_too_large_is_refused_before_the_archive_is_read(tiny_qwen3_dir, tmp_path):
    """The manifest (the first entry) sizes the endpoint; the rest is never read: here it is
    cut short, which reading it would have reported instead."""
    whole = archive_claiming(tiny_qwen3_dir, tmp_path / "8b.tar.gz", QWEN3_8B)
    cut = tmp_path / "8b-cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(PackageError, match="is truncated inside entry"):
        inspect_archive(cut)
    refused = cli("deploy", "rr", *model_args(cut, "--image-uri", IMAGE, "--dry-run",
                                              "--instance-type", "ml.g4dn.xlarge"))  # fmt: skip
    assert refused.exit_code == 1
    (line,) = error_lines(refused)
    assert "ml.g5.xlarge" in line and "NVIDIA T4" in line and "truncated" not in line


def test_a_plain_tar_of_the_files_is_refused_without_allow_unverified(tiny_archive, tmp_path):
    """GNU-format archives made elsewhere read fine, but prove nothing without a manifest."""
    with tarfile.open(tiny_archive, "r:gz") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.name != MANIFEST]
    elsewhere = write(tmp_path / "elsewhere.tar.gz", *(header(n, d) for n, d in members))
    with pytest.raises(PackageError, match="--allow-unverified"):
        inspect_archive(elsewhere, trust=Trust())
    assert inspect_archive(elsewhere, trust=Trust(allow_unverified=True)).manifest is None
