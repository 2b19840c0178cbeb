"""Local mode without a server: model dir preparation, bind policy, ``--env`` parsing."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from sagemaker_reranker.deploy.cli.serve import serve_command
from sagemaker_reranker.deploy.local.endpoint import (
    LocalEndpoint,
    LocalEndpointError,
    prepare_model_dir,
)
from sagemaker_reranker.deploy.local.net import bind_warning
from sagemaker_reranker.deploy.local.server import LocalSettings
from sagemaker_reranker.deploy.packaging.manifest import PackageError
from sagemaker_reranker.deploy.settings import parse_env


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``directory`` with its size and mtime (to prove nothing changed)."""
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
    }


def test_archive_is_extracted_with_its_handler(tiny_archive: Path, tmp_path: Path) -> None:
    model = prepare_model_dir(tmp_path, model_data=tiny_archive)
    assert model.parent == tmp_path.resolve()
    assert (model / "code" / "inference.py").is_file()
    assert (model / "config.json").is_file()


def test_bare_model_dir_gets_the_handler_without_being_written(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(tiny_model_dir)
    model = prepare_model_dir(tmp_path, model_dir=tiny_model_dir)
    assert snapshot(tiny_model_dir) == before
    assert not (tiny_model_dir / "code").exists()
    assert model != tiny_model_dir and (model / "code" / "inference.py").is_file()
    assert (model / "config.json").resolve() == (tiny_model_dir / "config.json").resolve()


def test_model_dir_with_its_own_handler_is_used_as_is(tiny_archive: Path, tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    packaged = prepare_model_dir(tmp_path / "first", model_data=tiny_archive)
    assert prepare_model_dir(tmp_path / "second", model_dir=packaged) == packaged


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/escape.txt"])
def test_archive_entries_escaping_the_dir_are_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "work").mkdir()
    with pytest.raises(PackageError, match=r"absolute path|climbs out"):
        prepare_model_dir(tmp_path / "work", model_data=archive)
    assert not (tmp_path / "escape.txt").exists()


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(LocalEndpointError, match="does not exist"):
        prepare_model_dir(tmp_path, model_data=tmp_path / "nope.tar.gz")
    with pytest.raises(LocalEndpointError, match="does not exist"):
        prepare_model_dir(tmp_path, model_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="exactly one"):
        LocalEndpoint()
    with pytest.raises(ValueError, match="unknown server"):
        LocalEndpoint(model_dir=tmp_path, server="docker")


def test_settings_are_one_object_serialised_once_without_env_values(tmp_path: Path) -> None:
    endpoint = LocalEndpoint(
        model_dir=tmp_path, server="inprocess", env={"HF_TOKEN": "s3cret"}, max_connections=3
    )
    settings = endpoint.settings
    assert settings.server == "worker"  # the earlier name still works
    assert settings.env_names == ("HF_TOKEN",) and settings.max_connections == 3
    assert LocalSettings.from_json(settings.to_json()) == settings
    assert "s3cret" not in settings.to_json()  # values travel only in the environment
    with pytest.raises(ValueError, match="not an environment variable name"):
        LocalSettings(env_names=("1BAD",))


def test_the_server_process_refuses_bad_settings_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sagemaker_reranker.deploy.local.server", "--settings", '{"x": 1}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--settings" in done.stderr
    assert "Traceback" not in done.stderr


def test_server_option_names_worker_and_still_takes_inprocess() -> None:
    runner = CliRunner()
    help_text = runner.invoke(serve_command, ["--help"]).output
    assert "[worker|mms]" in help_text and "inprocess" not in help_text
    # Past the option's check, the command stops at the missing model (not at --server).
    taken = runner.invoke(serve_command, ["--server", "inprocess"])
    assert taken.exit_code == 2 and "exactly one of --model-data or --model-dir" in taken.output
    refused = runner.invoke(serve_command, ["--server", "docker"])
    assert refused.exit_code == 2 and "Invalid value for '--server'" in refused.output


def test_failed_start_leaves_no_temp_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    endpoint = LocalEndpoint(model_data=tmp_path / "missing.tar.gz")
    with pytest.raises(LocalEndpointError):
        endpoint.start()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_binds_silently(host: str) -> None:
    assert bind_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "my-host.example"])
def test_other_binds_warn(host: str) -> None:
    warning = bind_warning(host)
    assert warning is not None and host in warning and "no authentication" in warning


def test_env_pairs_parse_and_bad_ones_are_named() -> None:
    assert parse_env(["A=1", "RERANKER_MAX_PAIRS=64", "EMPTY=", "EQ=a=b"]) == {
        "A": "1",
        "RERANKER_MAX_PAIRS": "64",
        "EMPTY": "",
        "EQ": "a=b",
    }
    for bad in ["NOVALUE", "=1", "BAD-NAME=1", "SP ACE=1"]:
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_env([bad])
