"""Hostile archives: links, path-limit tricks, decompression bombs, truncated, edited and forged
archives. Each is made here, and refused before anything is written outside (or left inside)
the extraction folder."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tracemalloc
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    PackageError,
    read_manifest,
)
from sagemaker_reranker.deploy.packaging.tar_reader import ENV_MAX_BYTES, ENV_MAX_ENTRIES
from sagemaker_reranker.deploy.packaging.verify import inspect_archive

GIB = 1 << 30


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def write_tar_gz(path: Path, entries, fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


@pytest.fixture
def jail(tmp_path: Path) -> tuple[Path, Path]:
    """``(jail, dest)``: extraction goes to ``jail/dest``; nothing else may appear in ``jail``."""
    dest = tmp_path / "jail" / "dest"
    dest.mkdir(parents=True)
    return dest.parent, dest


def assert_nothing_written(jail: Path, dest: Path) -> None:
    assert sorted(os.listdir(jail)) == ["dest"], "something was written beside the folder"
    assert list(dest.iterdir()) == [], "a refused archive left partial output"


def cve_2025_4517_shape(path: Path, dest: Path) -> Path:
    """The archive shape of CVE-2025-4517: folders with names long enough that, reached through
    a chain of short links, the path nears PATH_MAX; a link past that point is never expanded
    by ``realpath`` (so ``tarfile``'s data filter and a realpath check see it as harmless)
    while the kernel follows it to the folder above ``dest``, where a file is then written."""
    steps = "abcdefghijklmnop"
    path_max = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((path_max - len(str(dest)) - 1) // (len(steps) + 1))
    entries, prefix = [], ""
    for step in steps:
        entries.append(entry(os.path.join(prefix, component), tarfile.DIRTYPE))
        entries.append(entry(os.path.join(prefix, step), tarfile.SYMTYPE, component))
        prefix = os.path.join(prefix, component)
    long_link = os.path.join(*steps, "l" * 254)
    entries.append(entry(long_link, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps))))
    entries.append(entry("escape", tarfile.SYMTYPE, os.path.join(long_link, "..")))
    entries.append(entry("escape/escaped.txt", data=b"written outside the folder"))
    return write_tar_gz(path, entries)


def test_cve_2025_4517_archive_is_refused_and_nothing_lands_outside(tmp_path, jail):
    jail_dir, dest = jail
    archive = cve_2025_4517_shape(tmp_path / "evil.tar.gz", dest)
    # Its folder names need pax headers (over 100 bytes), so it is refused at its first
    # header, before the links; with short names, the links are refused (the test below).
    refusal = "archive entry '././@PaxHeader' is a pax extended header"
    with pytest.raises(PackageError, match=re.escape(refusal)):
        extract_archive(archive, dest)
    assert not (jail_dir / "escaped.txt").exists()
    assert_nothing_written(jail_dir, dest)
    with pytest.raises(PackageError, match=re.escape(refusal)):
        inspect_archive(archive)


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([entry("config.json", data=b"{}"), entry("alias.json", tarfile.SYMTYPE, "config.json")],
         "'alias.json' is a symbolic link"),
        ([entry("config.json", data=b"{}"), entry("copy.json", tarfile.LNKTYPE, "config.json")],
         "'copy.json' is a hard link"),
        ([entry("dev", tarfile.CHRTYPE)], "'dev' is a character device"),
        ([entry("disk", tarfile.BLKTYPE)], "'disk' is a block device"),
        ([entry("pipe", tarfile.FIFOTYPE)], "'pipe' is a FIFO"),
        ([entry("a", data=b"1"), entry("a", data=b"2")], "'a'.*(appears twice|clashes)"),
        ([entry("a", data=b"1"), entry("a/b", data=b"2")], "'a/b'"),
    ],
    ids=["symlink inside", "hardlink inside", "char device", "block device", "fifo",
         "same name twice", "file under a file"],
)  # fmt: skip
def test_links_and_special_files_are_refused_even_pointing_inside(tmp_path, jail, entries, words):
    jail_dir, dest = jail
    archive = write_tar_gz(tmp_path / "evil.tar.gz", entries)
    with pytest.raises(PackageError, match=words):
        extract_archive(archive, dest)
    assert_nothing_written(jail_dir, dest)


def gzip_bomb(path: Path, name: str, size: int, kind: bytes = tarfile.REGTYPE) -> Path:
    """A tar.gz holding one ``size``-byte entry of zeros, built in a fraction of a second:
    after a full flush, deflate encodes every MiB of zeros as the same ~1 KB block."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(header)
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header, no name, mtime 0
        out.write(deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH))
        block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
        for _ in range(size >> 20):
            out.write(block)
            crc = zlib.crc32(zeros, crc)
        tail = bytes(1024)  # the end-of-archive blocks
        out.write(deflate.compress(tail) + deflate.flush())
        crc = zlib.crc32(tail, crc)
        out.write(
            crc.to_bytes(4, "little")
            + ((len(header) + size + 1024) % (1 << 32)).to_bytes(4, "little")
        )
    return path


def test_gzip_bomb_of_one_gib_is_refused_at_its_header(tmp_path, jail):
    jail_dir, dest = jail
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", "model.safetensors", GIB)
    assert bomb.stat().st_size < 2 << 20
    with gzip.open(bomb) as check, tarfile.open(fileobj=check, mode="r|") as tar:
        assert tar.next().size == GIB  # a well-formed archive: the bytes really are there
    with pytest.raises(PackageError, match="decompression bomb"):
        extract_archive(bomb, dest)
    assert_nothing_written(jail_dir, dest)
    for reader in (inspect_archive, read_manifest):
        with pytest.raises(PackageError, match="decompression bomb"):
            reader(bomb)


def test_oversized_metadata_header_is_refused_before_it_is_read(tmp_path, jail):
    """A pax header (or GNU long name) is read into memory: tarfile reads any size."""
    jail_dir, dest = jail
    bomb = gzip_bomb(tmp_path / "pax-bomb.tar.gz", "././@PaxHeader", 64 << 20, tarfile.XHDTYPE)
    with pytest.raises(PackageError, match="metadata header"):
        extract_archive(bomb, dest)
    assert_nothing_written(jail_dir, dest)


def test_size_and_entry_caps_can_be_set_and_are_enforced(tmp_path, jail, monkeypatch):
    jail_dir, dest = jail
    many = write_tar_gz(tmp_path / "many.tar.gz", [entry(f"f{i}", data=b"x") for i in range(50)])
    monkeypatch.setenv(ENV_MAX_ENTRIES, "20")
    with pytest.raises(PackageError, match=f"more than 20 entries.*{ENV_MAX_ENTRIES}"):
        extract_archive(many, dest)
    assert_nothing_written(jail_dir, dest)
    monkeypatch.delenv(ENV_MAX_ENTRIES)
    big = write_tar_gz(tmp_path / "big.tar.gz", [entry("w.safetensors", data=os.urandom(300_000))])
    monkeypatch.setenv(ENV_MAX_BYTES, "100000")
    with pytest.raises(PackageError, match=f"more than 100000 bytes.*{ENV_MAX_BYTES}"):
        extract_archive(big, dest)
    assert_nothing_written(jail_dir, dest)
    monkeypatch.setenv(ENV_MAX_BYTES, "lots")
    with pytest.raises(PackageError, match="must be a positive whole number"):
        extract_archive(big, dest)
    monkeypatch.delenv(ENV_MAX_BYTES)
    assert (extract_archive(big, dest) / "w.safetensors").stat().st_size == 300_000


# ------------------------------------------------------------------ truncated, edited, forged


def members_of(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]


def rebuild(archive: Path, out: Path, edit) -> Path:
    """``archive`` with ``edit(name, data)`` applied to each entry (None drops the entry)."""
    entries = []
    for info, data in members_of(archive):
        changed = edit(info.name, data)
        if changed is not None:
            info.size = len(changed)
            entries.append((info, changed))
    return write_tar_gz(out, entries, tarfile.GNU_FORMAT)


def with_manifest(archive: Path, out: Path, **fields) -> Path:
    def edit(name, data):
        if name != MANIFEST:
            return data
        return json.dumps({**json.loads(data), **fields}).encode()

    return rebuild(archive, out, edit)


def test_truncated_archive_names_the_entry_and_leaves_nothing(tmp_path, jail, tiny_archive):
    jail_dir, dest = jail
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tiny_archive.read_bytes()[: tiny_archive.stat().st_size * 2 // 3])
    with pytest.raises(PackageError, match=r"is truncated inside entry '[^']+'"):
        extract_archive(cut, dest)
    assert_nothing_written(jail_dir, dest)
    with pytest.raises(PackageError, match="truncated"):
        inspect_archive(cut)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == "model.safetensors" else d,
         "entry 'model.safetensors' does not match its manifest's sha256"),
        (lambda n, d: d + b"\nimport os  # injected\n" if n == "code/inference.py" else d,
         "entry 'code/inference.py' does not match"),
        (lambda n, d: None if n == "tokenizer.json" else d,
         "entry 'tokenizer.json' listed in its manifest is missing"),
    ],
    ids=["weights edited", "handler edited", "file removed"],
)  # fmt: skip
def test_edited_archive_is_refused_naming_the_first_bad_entry(
    tmp_path, jail, tiny_archive, edit, words
):
    jail_dir, dest = jail
    edited = rebuild(tiny_archive, tmp_path / "edited.tar.gz", edit)
    with pytest.raises(PackageError, match=words):
        extract_archive(edited, dest)
    assert_nothing_written(jail_dir, dest)
    with pytest.raises(PackageError, match=words):
        inspect_archive(edited)


def test_added_file_is_refused(tmp_path, jail, tiny_archive):
    jail_dir, dest = jail
    entries = [*members_of(tiny_archive), entry("code/requirements.txt", data=b"evil==1.0\n")]
    added = write_tar_gz(tmp_path / "added.tar.gz", entries)
    with pytest.raises(PackageError, match=r"'code/requirements\.txt' is not in its manifest"):
        extract_archive(added, dest)
    assert_nothing_written(jail_dir, dest)


def test_forged_manifest_claims_are_refused(tmp_path, tiny_archive):
    no_weights = with_manifest(tiny_archive, tmp_path / "a.tar.gz", weights=False, source="x/y")
    with pytest.raises(PackageError, match="says weights: false but the archive holds weight"):
        inspect_archive(no_weights)
    wrong_handler = json.loads(read_manifest(tiny_archive).to_json())["files"]
    wrong_handler["code/inference.py"] = "0" * 64
    forged = with_manifest(tiny_archive, tmp_path / "b.tar.gz", files=wrong_handler)
    with pytest.raises(PackageError, match=r"'code/inference\.py' does not match"):
        inspect_archive(forged)
    typed = with_manifest(tiny_archive, tmp_path / "c.tar.gz", weights="false")
    with pytest.raises(PackageError, match="'weights' must be true or false"):
        read_manifest(typed)
    injected = with_manifest(tiny_archive, tmp_path / "d.tar.gz", source="a\nRERANKER_X=1")
    with pytest.raises(PackageError, match="'source' must be printable text"):
        read_manifest(injected)


def test_archive_without_weights_may_only_name_a_hub_model(tmp_path, tiny_archive):
    def strip(name, data):
        if name == MANIFEST:
            manifest = json.loads(data)
            files = {k: v for k, v in manifest["files"].items() if k.startswith("code/")}
            return json.dumps({**manifest, "files": files, "weights": False}).encode()
        return data if name.startswith("code/") else None

    for source, ok in (("BAAI/bge-reranker-base", True), ("dir:my-model", False),
                       ("https://evil.example/model", False)):  # fmt: skip
        archive = rebuild(tiny_archive, tmp_path / "nw.tar.gz", strip)
        archive = with_manifest(archive, tmp_path / "nw2.tar.gz", source=source)
        if ok:
            assert inspect_archive(archive).weights is False
        else:
            with pytest.raises(PackageError, match="not a Hugging Face hub id"):
                inspect_archive(archive)


def test_oversized_manifest_is_refused_before_it_is_read(tmp_path):
    huge = {"source": "x/y", "revision": None, "weights": False, "pad": "x" * MAX_MANIFEST_BYTES}
    archive = write_tar_gz(tmp_path / "m.tar.gz", [entry(MANIFEST, data=json.dumps(huge).encode())])
    with pytest.raises(PackageError, match=f"over {MAX_MANIFEST_BYTES} bytes"):
        read_manifest(archive)
    with pytest.raises(PackageError, match=f"over {MAX_MANIFEST_BYTES} bytes"):
        inspect_archive(archive)
    # A 200 MiB manifest of zeros (~200 KB compressed): refused without reading it into memory.
    bomb = gzip_bomb(tmp_path / "manifest-bomb.tar.gz", MANIFEST, 200 << 20)
    for reader in (read_manifest, inspect_archive):
        tracemalloc.start()
        try:
            with pytest.raises(PackageError, match=f"over {MAX_MANIFEST_BYTES} bytes"):
                reader(bomb)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"{reader.__name__} held {peak} bytes"


def test_serve_refuses_a_hostile_archive_in_one_line_exit_2(tmp_path, tiny_archive):
    edited = rebuild(
        tiny_archive,
        tmp_path / "edited.tar.gz",
        lambda n, d: d + b"# changed\n" if n == "code/inference.py" else d,
    )
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", "model.safetensors", GIB)
    for archive, words in ((edited, "'code/inference.py' does not match"),
                           (bomb, "decompression bomb")):  # fmt: skip
        result = CliRunner().invoke(main, ["serve", "--model-data", str(archive), "--port", "0"])
        assert result.exit_code == 2, result.output
        assert words in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
