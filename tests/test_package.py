"""``sagemaker-reranker package`` and archive extraction: layout, determinism, safety."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from hashlib import sha256
from pathlib import Path

import pytest
from click.testing import CliRunner

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.build import handler_files, handler_source, package
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import (
    MANIFEST,
    PackageError,
    file_sha256,
    read_manifest,
)


def run_cli(*args: str):
    return CliRunner().invoke(main, ["package", *args])


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {member.name: member for member in tar.getmembers()}


def test_layout_and_manifest(tiny_archive, tiny_model_dir):
    entries = members(tiny_archive)
    assert sorted(entries) == [
        *(f"code/{name}" for name in handler_files()),
        "config.json",
        "model.safetensors",
        MANIFEST,
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in entries.values())
    with tarfile.open(tiny_archive, "r:gz") as tar:
        assert tar.extractfile("code/inference.py").read() == handler_source()
        for name, data in handler_files().items():  # the front door and its reranker_* modules
            assert tar.extractfile(f"code/{name}").read() == data
            assert read_manifest(tiny_archive).files[f"code/{name}"] == sha256(data).hexdigest()
    manifest = read_manifest(tiny_archive)
    assert manifest.weights is True
    assert manifest.source == f"dir:{tiny_model_dir.name}"
    assert manifest.files["model.safetensors"] == file_sha256(tiny_model_dir / "model.safetensors")
    assert "transformers" in manifest.versions


def test_two_runs_give_the_same_bytes(tiny_model_dir, tmp_path):
    first = package(str(tiny_model_dir), tmp_path / "a.tar.gz")
    second = package(str(tiny_model_dir), tmp_path / "b.tar.gz")
    assert first.sha256 == second.sha256 == file_sha256(tmp_path / "a.tar.gz")


def test_cli_prints_path_size_sha_and_contents(tiny_model_dir, tmp_path):
    out = tmp_path / "model.tar.gz"
    result = run_cli("--model", str(tiny_model_dir), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert file_sha256(out) in result.output
    assert "KiB" in result.output and "code/inference.py" in result.output


def test_overwrite_is_refused_without_force(tiny_model_dir, tmp_path):
    out = tmp_path / "model.tar.gz"
    out.write_bytes(b"keep me")
    refused = run_cli("--model", str(tiny_model_dir), "-o", str(out))
    assert refused.exit_code == 2 and "--force" in refused.output
    assert out.read_bytes() == b"keep me"
    assert run_cli("--model", str(tiny_model_dir), "-o", str(out), "--force").exit_code == 0


def test_no_weights_leaves_the_weights_out(tmp_path):
    out = tmp_path / "model.tar.gz"
    commit = "f" * 40  # a full commit needs no hub lookup (the tests run offline)
    args = ("--model", "BAAI/bge-reranker-base", "--no-weights", "--revision", commit)
    result = run_cli(*args, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(members(out)) == [*(f"code/{name}" for name in handler_files()), MANIFEST]
    manifest = read_manifest(out)
    assert manifest.weights is False and manifest.source == "BAAI/bge-reranker-base"
    assert manifest.revision == commit


@pytest.mark.parametrize(
    ("remove", "words"), [("config.json", "no config.json"), ("tokenizer.json", "no tokenizer")]
)
def test_bad_model_dir_is_one_line_exit_2(tiny_model_dir, tmp_path, remove, words):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / remove).unlink()
    if remove == "tokenizer.json":
        (model / "tokenizer_config.json").unlink()
    result = run_cli("--model", str(model), "-o", str(tmp_path / "out.tar.gz"))
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output


def test_hub_unreachable_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_cli("--model", "BAAI/bge-reranker-base", "-o", str(tmp_path / "m.tar.gz"))
    assert result.exit_code == 2
    assert "cannot download BAAI/bge-reranker-base" in result.output
    assert "Traceback" not in result.output


def test_pickle_weights_need_allow_pickle(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    refused = run_cli("--model", str(model), "-o", str(tmp_path / "a.tar.gz"))
    assert refused.exit_code == 2 and "pickle" in refused.output and "safetensors" in refused.output
    allowed = run_cli("--model", str(model), "-o", str(tmp_path / "b.tar.gz"), "--allow-pickle")
    assert allowed.exit_code == 0, allowed.output
    assert "pytorch_model.bin" in members(tmp_path / "b.tar.gz")


def test_duplicate_pickle_and_onnx_weights_are_left_out(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "pytorch_model.bin").write_bytes(b"duplicate")
    (model / "onnx").mkdir()
    (model / "onnx" / "model.onnx").write_bytes(b"duplicate")
    result = package(str(model), tmp_path / "m.tar.gz")
    assert "pytorch_model.bin" not in result.manifest.files
    assert not any(name.startswith("onnx") for name in result.manifest.files)


def test_package_never_follows_links_out_of_the_model_dir(tiny_model_dir, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "special_tokens_map.json").symlink_to(secret)
    with pytest.raises(PackageError, match="links outside"):
        package(str(model), tmp_path / "m.tar.gz")


def hostile_archive(path: Path, entry: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        payload = b"x"
        if entry.isfile():
            entry.size = len(payload)
            tar.addfile(entry, io.BytesIO(payload))
        else:
            tar.addfile(entry)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (_entry("/etc/evil"), "absolute path"),
        (_entry("../evil"), "'..'"),
        (_entry("code/../../evil"), "'..'"),
        (_entry("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_entry("code/link", tarfile.SYMTYPE, "../../outside"), "symbolic link"),
        (_entry("hard", tarfile.LNKTYPE, "../outside"), "hard link"),
        (_entry("fifo", tarfile.FIFOTYPE), "not a file"),
    ],
)
def test_extraction_refuses_escaping_entries(tmp_path, entry, words):
    archive = hostile_archive(tmp_path / "evil.tar.gz", entry)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(PackageError, match=words.replace("(", r"\(")):
        extract_archive(archive, dest)
    assert list(dest.iterdir()) == []


def test_extraction_of_a_packaged_archive(tmp_path, tiny_archive):
    dest = extract_archive(tiny_archive, tmp_path / "dest")
    assert json.loads((dest / "config.json").read_text())["model_type"] == "bert"
    assert (dest / "code" / "inference.py").read_bytes() == handler_source()
