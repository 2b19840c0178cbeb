"""Build ``model.tar.gz``: model files at the root, the handler in ``code/``.

The archive is deterministic (sorted entries, fixed mtime/owner/mode, gzip mtime 0), so its
sha256 names its S3 key and an unchanged archive is never uploaded twice. A manifest at the
root (``manifest.py``) records where the model came from and the sha256 of every file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module, metadata, util
from pathlib import Path, PurePosixPath
from types import ModuleType

from sagemaker_reranker.deploy.packaging.hub import download_model, resolve_commit
from sagemaker_reranker.deploy.packaging.kinds import (
    ModelDetails,
    check_scoring,
    describe_files,
    describe_hub_model,
)
from sagemaker_reranker.deploy.packaging.manifest import Manifest, PackageError, file_sha256
from sagemaker_reranker.deploy.packaging.tar_reader import name_problem
from sagemaker_reranker.inference.reranker_contract import (
    HANDLER,
    HANDLER_DIR,
    MANIFEST,
    PICKLE_WEIGHT_PATTERNS,
    SAFE_WEIGHT_PATTERNS,
    is_weight_file,
)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: bytes done of a stage ("hashing", then "compressing")."""

# What a reranker needs at run time: config, tokenizer files, safetensors weights, licence.
MODEL_PATTERNS = (
    "config.json",
    *SAFE_WEIGHT_PATTERNS,
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "LICENSE*",
    "README.md",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
)
FIXED_MTIME = 0
COPY_BUFFER = 1 << 20
CONVERT_HINT = (
    'convert it to safetensors: python -c "from transformers import '
    "AutoModelForSequenceClassification as M; M.from_pretrained('DIR').save_pretrained('OUT')\""
    " (and copy the tokenizer files), or pass --allow-pickle"
)


@dataclass
class PackageResult:
    path: Path
    sha256: str
    size: int
    manifest: Manifest
    kind: str = ""
    """How the handler will score the model, in words (``package`` prints it)."""


def human_size(size: float) -> str:
    """``1.1 GiB``, ``80.0 MiB``, ``512 B``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(PurePosixPath(name).match(pattern) for pattern in patterns)


def model_files(
    model_dir: Path, allow_pickle: bool, link_root: Path | None = None
) -> dict[str, Path]:
    """Pick the files of ``model_dir`` that belong in the archive (top level only).

    Links are followed only when they stay inside ``link_root`` (default ``model_dir``; a hub
    cache snapshot links into its repo's blobs). Pickle weights are taken only with
    ``allow_pickle`` and only when no safetensors weights are there.
    """
    root = model_dir.resolve()
    links_root = (link_root or model_dir).resolve()
    if not (root / "config.json").is_file():
        raise PackageError(f"{model_dir} has no config.json: not a Hugging Face model directory")
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        raise PackageError(f"{model_dir} has no tokenizer files (tokenizer.json, vocab.txt, …)")
    chosen: dict[str, Path] = {}
    pickles: dict[str, Path] = {}
    for entry in sorted(model_dir.iterdir()):
        if entry.is_symlink() and not entry.resolve().is_relative_to(links_root):
            raise PackageError(f"{entry} links outside the model directory; copy the real file")
        if not entry.is_file():
            continue
        if _matches(entry.name, MODEL_PATTERNS + PICKLE_WEIGHT_PATTERNS) and name_problem(
            entry.name
        ):
            raise PackageError(f"model file {entry} {name_problem(entry.name)}: rename it")
        if _matches(entry.name, MODEL_PATTERNS):
            chosen[entry.name] = entry
        elif _matches(entry.name, PICKLE_WEIGHT_PATTERNS):
            pickles[entry.name] = entry
    if not any(is_weight_file(name) for name in chosen):
        if not pickles:
            raise PackageError(f"{model_dir} has no weights (*.safetensors)")
        if not allow_pickle:
            raise PackageError(
                f"{model_dir} has only pickle weights ({', '.join(sorted(pickles))}), which can "
                f"run code when loaded; {CONVERT_HINT}"
            )
        chosen.update(pickles)
    return chosen


def handler_dir() -> Path:
    """The installed handler's folder (``code/`` in every archive), found through importlib."""
    spec = util.find_spec("sagemaker_reranker.inference")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / HANDLER).is_file():
            return Path(location)
    raise PackageError(f"this installation has no handler ({HANDLER}); reinstall the package")


def handler_files() -> dict[str, bytes]:
    """Every file of the handler (``inference.py`` and its ``reranker_*`` modules), by name:
    the same bytes every archive carries in ``code/``."""
    return {path.name: path.read_bytes() for path in sorted(handler_dir().glob("*.py"))}


def handler_source() -> bytes:
    """The handler's front door, ``code/inference.py``."""
    return (handler_dir() / HANDLER).read_bytes()


def import_handler(name: str = "inference") -> ModuleType:
    """A module of the packaged handler, imported in this process as the serving container
    imports it: ``code/`` (``handler_dir``) on ``sys.path``, then ``import inference``."""
    code = str(handler_dir())
    if code not in sys.path:
        sys.path.insert(0, code)
    # A repository checkout on sys.path offers its ``inference/`` folder as a namespace
    # package; one cached before code/ was on the path would stand in for the module.
    if getattr(sys.modules.get("inference"), "__file__", "") is None:
        del sys.modules["inference"]
    return import_module(name)


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("sagemaker-reranker", "transformers", "torch", "huggingface_hub"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _info(name: str, size: int) -> tarfile.TarInfo:
    """A regular-file entry with everything but name and size fixed."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path, advance: Callable[[int], None]) -> None:
    """Stream ``path`` into the archive, reporting the bytes read."""
    with open(path, "rb") as handle:
        tar.addfile(_info(name, path.stat().st_size), _Counting(handle, advance))


class _Counting:
    """A reader that reports how many bytes went through it."""

    def __init__(self, handle: io.BufferedReader, advance: Callable[[int], None]) -> None:
        self.handle, self.advance = handle, advance

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.advance(len(data))
        return data


class _Hashing(io.RawIOBase):
    """A writer that hashes what it writes, so the archive is not read again for its sha256."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        self.raw, self.digest = raw, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)


class _Stage:
    """Bytes done of one stage, reported through ``progress``."""

    def __init__(self, progress: Progress | None, stage: str, total: int) -> None:
        self.progress, self.stage, self.total, self.done = progress, stage, total, 0
        self(0)

    def __call__(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.stage, self.done, self.total)


def check_output(output: Path, force: bool) -> None:
    """Refuse an output that is a folder, or exists without ``force``, before any work."""
    if output.is_dir():
        raise PackageError(
            f"{output} is a directory; give the archive's file name, e.g. -o "
            f"{output / 'model.tar.gz'}"
        )
    if output.exists() and not force:
        raise PackageError(f"{output} exists; pass --force to overwrite it")


def _os_error(error: OSError, output: Path, partial: Path) -> PackageError:
    where = error.filename
    if where is None or str(where) in (str(partial), str(output)):
        return PackageError(f"cannot write {output}: {error.strerror or error}")
    return PackageError(f"cannot read or write {where}: {error.strerror or error}")


def write_archive(
    output: Path,
    files: dict[str, Path],
    source: str,
    revision: str | None,
    force: bool = False,
    progress: Progress | None = None,
    details: ModelDetails | None = None,
) -> PackageResult:
    """Write a deterministic ``model.tar.gz`` with ``files`` at the root and the handler.

    The archive is written to ``<output>.partial`` and renamed when complete; on any
    failure or interruption the partial file is removed, so ``output`` is either the old
    file or the whole new one.
    """
    check_output(output, force)
    handler = handler_files()
    total = sum(path.stat().st_size for path in files.values())
    partial = output.with_name(output.name + ".partial")
    try:
        hashing = _Stage(progress, "hashing", total)
        manifest = Manifest(
            source=source,
            revision=revision,
            weights=any(is_weight_file(name) for name in files),
            files={name: file_sha256(files[name], hashing) for name in sorted(files)},
            versions=_versions(),
            **(details.manifest_fields() if details else {}),
        )
        for name, data in handler.items():
            manifest.files[f"{HANDLER_DIR}/{name}"] = hashlib.sha256(data).hexdigest()
        output.parent.mkdir(parents=True, exist_ok=True)
        compressing = _Stage(progress, "compressing", total)
        with open(partial, "wb") as raw:
            hashed = _Hashing(raw)
            # mtime=0 and an empty file name keep the gzip header identical between runs.
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=hashed, mtime=0, compresslevel=6
            ) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    tar.copybufsize = COPY_BUFFER
                    # The manifest goes first: read_manifest then stops after one entry
                    # instead of decompressing the weights.
                    _add(tar, MANIFEST, manifest.to_json())
                    for name, data in handler.items():
                        _add(tar, f"{HANDLER_DIR}/{name}", data)
                    for name in sorted(files):
                        _add_file(tar, name, files[name], compressing)
        os.replace(partial, output)
    except OSError as error:
        raise _os_error(error, output, partial) from None
    finally:
        if partial.is_file():
            partial.unlink()
    kind = details.kind.description if details else ""
    return PackageResult(output, hashed.digest.hexdigest(), output.stat().st_size, manifest, kind)


def package(
    model: str,
    output: Path,
    revision: str | None = None,
    weights: bool = True,
    allow_pickle: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    scoring: str = "auto",
    instruction: str | None = None,
) -> PackageResult:
    """Package a local model directory or a hub model id into ``output``.

    ``scoring`` (auto, classifier, yes-no) and ``instruction`` are checked against the model
    and recorded in the manifest (``kinds.py``) before anything is downloaded or written.

    Without ``weights`` the archive records the hub commit ``revision`` resolves to, so
    every instance the endpoint ever starts loads that same commit.
    """
    check_output(output, force)
    check_scoring(scoring, instruction)
    local = Path(model)
    if local.is_dir():
        if not weights:
            raise PackageError(
                f"--no-weights needs a hub id: {model} is a local directory, which the endpoint "
                "cannot download at start; leave out --no-weights to bake its weights in"
            )
        if revision:
            raise PackageError(
                f"--revision applies to hub ids only: {model} is a local directory, packaged as "
                "it is; check out the revision you want into it"
            )
        files = model_files(local, allow_pickle)
        details = describe_files(files, local.resolve().name, scoring, instruction)
        source = f"dir:{local.resolve().name}"
        return write_archive(output, files, source, None, force, progress, details)
    if local.exists() or model.startswith((".", "/", "~")):
        raise PackageError(f"{model} is not a model directory")
    if not weights:
        commit = resolve_commit(model, revision)
        details = describe_hub_model(model, commit, scoring, instruction)
        return write_archive(output, {}, model, commit, force, progress, details)
    snapshot, commit = download_model(
        model,
        revision,
        MODEL_PATTERNS,
        PICKLE_WEIGHT_PATTERNS,
        allow_pickle,
        f"pickle weights can run code when loaded; {CONVERT_HINT}",
    )
    # The cache's snapshot folder links each file into the repo's blobs, two levels up.
    files = model_files(snapshot, allow_pickle, link_root=snapshot.parent.parent)
    details = describe_files(files, model, scoring, instruction)
    return write_archive(output, files, model, commit, force, progress, details)


def copy_handler(dest: Path) -> Path:
    """Write the packaged handler into ``dest/code`` (for serving a bare model directory)."""
    code = dest / HANDLER_DIR
    code.mkdir(parents=True, exist_ok=True)
    for name, data in handler_files().items():
        (code / name).write_bytes(data)
    return code / HANDLER
