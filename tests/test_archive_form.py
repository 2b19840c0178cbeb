"""One archive form: every archive an extractor could read differently from the checker is
refused, in one line naming the entry, by the checker, extraction, ``serve``, ``deploy`` and
``update``. Each hostile archive is built here on the tiny packaged model, its manifest
vouching for what the checker sees; each test first shows that GNU tar or ``tarfile`` really
writes other bytes (the payload) than the checker verified."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from aws_fixtures import Cli, model_args
from click.testing import CliRunner
from moto_shims import backend

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.manifest import MANIFEST, PackageError
from sagemaker_reranker.deploy.packaging.tar_reader import REPACK
from sagemaker_reranker.deploy.packaging.verify import inspect_archive

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.6.0"
PAYLOAD = b"import os\nos.system('echo owned')\n"
HANDLER = "code/inference.py"
GNU_TAR = shutil.which("tar")
needs_gnu_tar = pytest.mark.skipif(
    GNU_TAR is None or b"GNU tar" not in subprocess.run([GNU_TAR, "--version"],
                                                       capture_output=True).stdout,
    reason="needs GNU tar",
)  # fmt: skip
cli = Cli()

# ------------------------------------------------------------------ building raw archives


def header(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **fields) -> bytes:
    """One GNU-format entry as ``package`` writes it: header, data, padding."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, len(data), 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)


def patched(block: bytes, offset: int, raw: bytes) -> bytes:
    """``block`` (a header, maybe with data after it) with ``raw`` at ``offset``, checksum
    recomputed, as a hand-made archive would be."""
    head = bytearray(block[:512])
    head[offset : offset + len(raw)] = raw
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head) + block[512:]


def packaged_members(archive: Path, vouch: dict[str, bytes]) -> bytes:
    """The packaged archive's entries, its manifest also vouching for ``vouch`` (name: bytes):
    what the checker will see in place of the payload's real destination."""
    out = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()
            if member.name == MANIFEST:
                manifest = json.loads(data)
                for name, content in vouch.items():
                    manifest["files"][name] = hashlib.sha256(content).hexdigest()
                data = json.dumps(manifest).encode()
            out.append(header(member.name, data))
    return b"".join(out)


def write(path: Path, *parts: bytes, end: bytes = bytes(1024)) -> Path:
    path.write_bytes(gzip.compress(b"".join(parts) + end, mtime=0))
    return path


# ------------------------------------------------------------------ what extractors make of it


def tarfile_extracts(archive: Path, name: str) -> bytes | None:
    """The bytes ``tarfile`` writes last to ``name`` (as ``extractall`` would), or None."""
    found = None
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name == name and member.isfile():
                found = tar.extractfile(member).read()
    return found


def gnu_tar_extracts(archive: Path, out: Path, *flags: str) -> bytes | None:
    """The bytes GNU tar (``tar -xzf``) leaves at ``code/inference.py``, or None."""
    out.mkdir()
    subprocess.run([GNU_TAR, "-xzf", str(archive), "-C", str(out), *flags], capture_output=True,
                   timeout=60, check=False)  # fmt: skip
    target = out / HANDLER
    return target.read_bytes() if target.is_file() else None


# ------------------------------------------------------------------ the refusals


def assert_refused_everywhere(archive: Path, message: str, tmp_path: Path) -> None:
    """``message`` (the refusal's own text) from the checker, extraction (nothing left),
    ``serve`` and ``deploy``/``update --dry-run`` (exit 2, one line, nothing uploaded)."""
    with pytest.raises(PackageError) as refused:
        inspect_archive(archive)
    assert str(refused.value) == message
    dest = tmp_path / "dest"
    with pytest.raises(PackageError) as refused:
        extract_archive(archive, dest)
    assert str(refused.value) == message
    assert list(dest.iterdir()) == []
    served = CliRunner().invoke(main, ["serve", "--model-data", str(archive), "--port", "0"])
    assert served.exit_code == 2, served.output
    assert served.stderr.splitlines() == [f"Error: {message}"]
    for command in ("deploy", "update"):
        result = cli(command, "rr", *model_args(archive, "--image-uri", IMAGE, "--dry-run"))
        assert result.exit_code == 2, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert errors == [f"Error: {message}; nothing was uploaded"]
    assert not backend()._models


def entry_refusal(name: str, problem: str) -> str:
    return f"archive entry {name!r} {problem}; {REPACK}"


# ------------------------------------------------------------------ the three findings


@needs_gnu_tar
def test_a_global_pax_header_is_refused(moto, tiny_archive, tmp_path):
    """GNU tar and tarfile apply a global header's ``path`` to the entry after it."""
    global_header = tarfile.TarInfo.create_pax_global_header({"path": HANDLER})
    archive = write(tmp_path / "global.tar.gz",
                    packaged_members(tiny_archive, {"zz/evil.py": PAYLOAD}),
                    global_header, header("zz/evil.py", PAYLOAD))  # fmt: skip
    assert tarfile_extracts(archive, HANDLER) == PAYLOAD
    assert gnu_tar_extracts(archive, tmp_path / "gnu") == PAYLOAD
    message = entry_refusal(
        "././@PaxHeader",
        "is a global pax header, which GNU tar and tarfile apply to the entries after it and "
        "other extractors skip",
    )
    assert_refused_everywhere(archive, message, tmp_path)


def test_a_gnu_long_name_before_a_pax_path_is_refused(moto, tiny_archive, tmp_path):
    """tarfile takes the long name (the handler), a pax reader the pax path."""
    long_name = tarfile.TarInfo._create_gnu_long_header(
        HANDLER, tarfile.GNUTYPE_LONGNAME, "utf-8", "strict"
    )
    pax = tarfile.TarInfo._create_pax_generic_header({"path": "zz/evil.py"}, tarfile.XHDTYPE,
                                                     "utf-8")  # fmt: skip
    archive = write(tmp_path / "long.tar.gz",
                    packaged_members(tiny_archive, {"zz/evil.py": PAYLOAD}),
                    long_name, pax, header("zz/evil.py", PAYLOAD))  # fmt: skip
    assert tarfile_extracts(archive, HANDLER) == PAYLOAD
    message = entry_refusal(
        "././@LongLink", "is a GNU long-name header (a metadata header that renames the next entry)"
    )
    assert_refused_everywhere(archive, message, tmp_path)


@needs_gnu_tar
def test_prefix_bytes_in_a_gnu_header_are_refused(moto, tiny_archive, tmp_path):
    """GNU tar reads a GNU header's prefix field as times; tarfile joins it to the name."""
    hidden = patched(header(HANDLER, PAYLOAD), 345, b"zz")
    archive = write(tmp_path / "prefix.tar.gz",
                    packaged_members(tiny_archive, {f"zz/{HANDLER}": PAYLOAD}),
                    hidden)  # fmt: skip
    assert tarfile_extracts(archive, f"zz/{HANDLER}") == PAYLOAD
    assert gnu_tar_extracts(archive, tmp_path / "gnu") == PAYLOAD
    message = entry_refusal(
        f"zz/{HANDLER}",
        "has bytes in its prefix field, which ustar readers join to its name and GNU tar reads "
        "as times",
    )
    assert_refused_everywhere(archive, message, tmp_path)


# ------------------------------------------------------------------ more of the same kind


@needs_gnu_tar
def test_entries_after_the_end_of_archive_are_refused(moto, tiny_archive, tmp_path):
    """``tar --ignore-zeros`` (how concatenated archives are read) goes on past the end."""
    packaged = packaged_members(tiny_archive, {})
    archive = write(tmp_path / "after.tar.gz", packaged, bytes(1024), header(HANDLER, PAYLOAD))
    assert gnu_tar_extracts(archive, tmp_path / "gnu", "--ignore-zeros") == PAYLOAD
    message = (
        f"{archive} has data after its end-of-archive block (past byte {len(packaged) + 512}), "
        f"which `tar --ignore-zeros` reads as more entries; {REPACK}"
    )
    assert_refused_everywhere(archive, message, tmp_path)


@needs_gnu_tar
def test_a_folder_with_data_is_refused(moto, tiny_archive, tmp_path):
    """tarfile and GNU tar read a folder's data as the next header, where a reader that
    honours the declared size skips it: one archive, two sets of entries."""
    inner = header(HANDLER, PAYLOAD)
    folder = patched(header("zz", kind=tarfile.DIRTYPE), 124, tarfile.itn(len(inner), 12))
    archive = write(tmp_path / "folder.tar.gz", packaged_members(tiny_archive, {}), folder + inner)
    assert tarfile_extracts(archive, HANDLER) == PAYLOAD
    assert gnu_tar_extracts(archive, tmp_path / "gnu") == PAYLOAD
    message = entry_refusal(
        "zz", "is a folder with data, which some extractors read as the next header"
    )
    assert_refused_everywhere(archive, message, tmp_path)


PAX = tarfile.TarInfo._create_pax_generic_header({"path": HANDLER}, tarfile.XHDTYPE, "utf-8")
BASE_256 = b"\x80" + len(PAYLOAD).to_bytes(11, "big")


def odd(offset: int, raw: bytes, name: str = "zz/evil.py") -> Callable[[bytes], bytes]:
    """The packaged entries, then the payload under ``name`` with ``raw`` at ``offset``."""
    return lambda members: members + patched(header(name, PAYLOAD), offset, raw)


@pytest.mark.parametrize(
    ("build", "read_as", "checked_as", "entry", "problem"),
    [
        (lambda m: m + header(HANDLER.upper(), PAYLOAD), HANDLER.upper(), HANDLER.upper(),
         HANDLER.upper(), None),
        (odd(0, b"code\\inference.py\0"), "code\\inference.py", "code\\inference.py",
         "code\\inference.py",
         "has a name with characters other than printable ASCII, or a backslash"),
        (odd(124, BASE_256), "zz/evil.py", "zz/evil.py", "zz/evil.py",
         f"writes its size as {BASE_256!r}, which tar readers parse differently"),
        (odd(11, b"x"), "zz/evil.py", "zz/evil.py", "zz/evil.py",
         "has bytes after the end of its name"),
        (odd(157, b"config.json"), "zz/evil.py", "zz/evil.py", "zz/evil.py",
         "names a link target, which a file or folder has none of"),
        (odd(257, bytes(8)), "zz/evil.py", "zz/evil.py", "zz/evil.py",
         f"has no ustar or GNU tar header (magic {bytes(8)!r})"),
        (odd(0, b"zz/\0", name="zz"), "zz/", "zz", "zz/",
         "is a file whose name ends in '/', which some extractors make a folder"),
        (lambda m: m + PAX + header("zz/evil.py", PAYLOAD), HANDLER, "zz/evil.py",
         "././@PaxHeader",
         "is a pax extended header (a metadata header that renames or resizes the next entry)"),
    ],
    ids=["case clash", "backslash", "base-256 size", "name after NUL", "link target on a file",
         "no magic", "file named as a folder", "pax header"],
)  # fmt: skip
def test_every_other_ambiguous_form_is_refused(
    moto, tiny_archive, tmp_path, build, read_as, checked_as, entry, problem
):
    """``tarfile`` reads the payload as ``read_as``; the manifest vouches for it as
    ``checked_as``, the name the checks would see without the form rule."""
    members = packaged_members(tiny_archive, {checked_as: PAYLOAD})
    archive = write(tmp_path / "odd.tar.gz", build(members))
    assert tarfile_extracts(archive, read_as) == PAYLOAD
    if problem is None:
        message = (
            f"archive entry {entry!r} differs from {HANDLER!r} only in case, which a "
            "case-insensitive disk extracts as one file"
        )
    else:
        message = entry_refusal(entry, problem)
    assert_refused_everywhere(archive, message, tmp_path)


def test_the_form_package_writes_and_gnu_tar_archives_are_accepted(tiny_archive, tmp_path):
    """The rules refuse nothing ``package`` writes, nor a plain ``tar czf`` of its files."""
    assert inspect_archive(tiny_archive).manifest is not None
    if GNU_TAR is None:
        return
    files = tmp_path / "files"
    extract_archive(tiny_archive, files)
    for args in (["-C", str(files), "."], ["-C", str(files), *sorted(os.listdir(files))]):
        remade = tmp_path / "remade.tar.gz"
        subprocess.run([GNU_TAR, "-czf", str(remade), *args], check=True, timeout=60)
        assert inspect_archive(remade).hashes == inspect_archive(tiny_archive).hashes


@pytest.mark.parametrize(
    ("name", "problem"),
    [("w" * 90 + ".safetensors", "has a name over 100 bytes, which only an extended header holds"),
     ("wéights.safetensors", "has a name with characters other than printable ASCII, or a "
      "backslash")],
    ids=["long name", "non-ASCII name"],
)  # fmt: skip
def test_package_refuses_model_files_it_cannot_write_in_the_one_form(
    tiny_model_dir, tmp_path, name, problem
):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / name).write_bytes(b"")
    result = CliRunner().invoke(main, ["package", "--model", str(model), "-o", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"Error: model file {model / name} {problem}: rename it"]
