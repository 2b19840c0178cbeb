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
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path, PurePosixPath

from sagemaker_reranker.deploy.packaging.manifest import (
    MANIFEST,
    Manifest,
    PackageError,
    file_sha256,
)

HANDLER = "inference.py"
# What a reranker needs at run time: config, tokenizer files, safetensors weights, licence.
MODEL_PATTERNS = (
    "config.json",
    "*.safetensors",
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
PICKLE_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "sentencepiece.bpe.model",
)
FIXED_MTIME = 0
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


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(PurePosixPath(name).match(pattern) for pattern in patterns)


def model_files(model_dir: Path, allow_pickle: bool) -> dict[str, Path]:
    """Pick the files of ``model_dir`` that belong in the archive (top level only).

    Links are followed only when they stay inside ``model_dir``. Pickle weights are taken
    only with ``allow_pickle`` and only when no safetensors weights are there.
    """
    root = model_dir.resolve()
    if not (root / "config.json").is_file():
        raise PackageError(f"{model_dir} has no config.json: not a Hugging Face model directory")
    if not any((root / name).is_file() for name in TOKENIZER_FILES):
        raise PackageError(f"{model_dir} has no tokenizer files (tokenizer.json, vocab.txt, …)")
    chosen: dict[str, Path] = {}
    pickles: dict[str, Path] = {}
    for entry in sorted(model_dir.iterdir()):
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise PackageError(f"{entry} links outside the model directory; copy the real file")
        if not entry.is_file():
            continue
        if _matches(entry.name, MODEL_PATTERNS):
            chosen[entry.name] = entry
        elif _matches(entry.name, PICKLE_PATTERNS):
            pickles[entry.name] = entry
    if not any(name.endswith(".safetensors") for name in chosen):
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


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    """Stream ``path`` into the archive."""
    with open(path, "rb") as handle:
        tar.addfile(_info(name, path.stat().st_size), handle)


def write_archive(
    output: Path,
    files: dict[str, Path],
    source: str,
    revision: str | None,
    force: bool = False,
) -> PackageResult:
    """Write a deterministic ``model.tar.gz`` with ``files`` at the root and the handler."""
    if output.exists() and not force:
        raise PackageError(f"{output} exists; pass --force to overwrite it")
    handler = handler_files()
    manifest = Manifest(
        source=source,
        revision=revision,
        weights=any(_matches(name, ("*.safetensors", *PICKLE_PATTERNS)) for name in files),
        files={name: file_sha256(files[name]) for name in sorted(files)},
        versions=_versions(),
    )
    for name, data in handler.items():
        manifest.files[f"code/{name}"] = hashlib.sha256(data).hexdigest()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with open(partial, "wb") as raw:
        # mtime=0 and an empty file name keep the gzip header identical between runs.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                # The manifest goes first: read_manifest then stops after one entry
                # instead of decompressing the weights.
                _add(tar, MANIFEST, manifest.to_json())
                for name, data in handler.items():
                    _add(tar, f"code/{name}", data)
                for name in sorted(files):
                    _add_file(tar, name, files[name])
    os.replace(partial, output)
    return PackageResult(output, file_sha256(output), output.stat().st_size, manifest)


def download_model(model_id: str, revision: str | None, allow_pickle: bool, dest: Path) -> str:
    """Download only what the archive needs from the hub; return the resolved commit."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(model_id, revision=revision, files_metadata=False)
        names = [sibling.rfilename for sibling in info.siblings or []]
        patterns = list(MODEL_PATTERNS)
        if not any(name.endswith(".safetensors") for name in names):
            if not allow_pickle:
                raise PackageError(
                    f"{model_id} publishes only pickle weights, which can run code when "
                    f"loaded; {CONVERT_HINT}"
                )
            patterns += PICKLE_PATTERNS
        snapshot_download(model_id, revision=info.sha, allow_patterns=patterns, local_dir=dest)
    except PackageError:
        raise
    except Exception as error:  # offline, DNS, HTTP, auth: all end the same way for the user
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        raise PackageError(
            f"cannot download {model_id} from the Hugging Face hub ({type(error).__name__}: "
            f"{reason}); check the network, or pass a local model directory"
        ) from None
    return info.sha


def package(
    model: str,
    output: Path,
    revision: str | None = None,
    weights: bool = True,
    allow_pickle: bool = False,
    force: bool = False,
) -> PackageResult:
    """Package a local model directory or a hub model id into ``output``."""
    if output.exists() and not force:
        raise PackageError(f"{output} exists; pass --force to overwrite it")
    local = Path(model)
    if local.is_dir():
        files = model_files(local, allow_pickle) if weights else {}
        return write_archive(output, files, f"dir:{local.resolve().name}", revision, force)
    if local.exists() or model.startswith((".", "/")):
        raise PackageError(f"{model} is not a model directory")
    if not weights:
        return write_archive(output, {}, model, revision, force)
    with tempfile.TemporaryDirectory(prefix="reranker-download-") as scratch:
        commit = download_model(model, revision, allow_pickle, Path(scratch))
        files = model_files(Path(scratch), allow_pickle)
        return write_archive(output, files, model, commit, force)


def copy_handler(dest: Path) -> Path:
    """Write the packaged handler into ``dest/code`` (for serving a bare model directory)."""
    code = dest / "code"
    code.mkdir(parents=True, exist_ok=True)
    for name, data in handler_files().items():
        (code / name).write_bytes(data)
    return code / HANDLER
