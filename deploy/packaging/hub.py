"""Models from the Hugging Face hub, through the shared cache every hub tool uses.

Downloads land in the cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``), so
packaging the same revision again downloads nothing, and what ``transformers`` already
fetched is reused. With ``HF_HUB_OFFLINE=1`` everything comes from that cache or fails in
one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from sagemaker_reranker.deploy.packaging.manifest import PackageError
from sagemaker_reranker.inference.reranker_contract import is_pickle_weight_file, is_weight_file

COMMIT = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_REVISION = "main"


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _reason(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:160]


def download_error(model_id: str, error: BaseException) -> PackageError:
    """Offline, DNS, HTTP, auth, a missing repo: all end the same way for the user."""
    return PackageError(
        f"cannot download {model_id} from the Hugging Face hub ({type(error).__name__}: "
        f"{_reason(error)}); check the network, or pass a local model directory"
    )


def resolve_commit(model_id: str, revision: str | None) -> str:
    """The commit ``revision`` (default: main) of ``model_id`` names now.

    Offline, a full commit hash is taken as it is and a branch or tag is looked up in the
    cache (as ``huggingface_hub`` itself does offline).
    """
    wanted = revision or DEFAULT_REVISION
    if _offline():
        if COMMIT.match(wanted):
            return wanted
        cached = _cached_ref(model_id, wanted)
        if cached:
            return cached
        raise PackageError(
            f"cannot resolve {model_id}@{wanted} to a commit: HF_HUB_OFFLINE is set and the "
            "Hugging Face cache has no such revision; unset HF_HUB_OFFLINE, or pass --revision "
            "with a full commit hash"
        )
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(model_id, revision=revision, files_metadata=False).sha
    except Exception as error:  # offline, DNS, HTTP, auth: see download_error
        raise download_error(model_id, error) from None


def _cached_ref(model_id: str, revision: str) -> str | None:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = (
        Path(constants.HF_HUB_CACHE)
        / repo_folder_name(repo_id=model_id, repo_type="model")
        / "refs"
        / revision
    )
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if COMMIT.match(commit) else None


def download_model(
    model_id: str,
    revision: str | None,
    patterns: tuple[str, ...],
    pickle_patterns: tuple[str, ...],
    allow_pickle: bool,
    pickle_refusal: str,
) -> tuple[Path, str]:
    """Fetch what the archive needs into the cache: (snapshot folder, resolved commit).

    Only ``patterns`` are downloaded; ``pickle_patterns`` too when the repo publishes no
    safetensors and ``allow_pickle`` is set, else ``pickle_refusal`` is the error. The
    snapshot folder links into the cache's blobs; nothing is copied.
    """
    from huggingface_hub import HfApi, snapshot_download

    wanted = list(patterns)
    try:
        if _offline():
            # Nothing is downloaded here, so the pickle files may as well be looked for.
            folder = snapshot_download(
                model_id,
                revision=revision or DEFAULT_REVISION,
                allow_patterns=wanted + (list(pickle_patterns) if allow_pickle else []),
                local_files_only=True,
            )
            return Path(folder), Path(folder).name
        info = HfApi().model_info(model_id, revision=revision, files_metadata=False)
        names = [sibling.rfilename for sibling in info.siblings or []]
        if all(is_pickle_weight_file(name) for name in names if is_weight_file(name)):
            if not allow_pickle:
                raise PackageError(f"{model_id} publishes only pickle weights; {pickle_refusal}")
            wanted += pickle_patterns
        # A commit hash makes every cached file a hit without asking the hub about it again.
        folder = snapshot_download(model_id, revision=info.sha, allow_patterns=wanted)
    except PackageError:
        raise
    except Exception as error:  # offline, DNS, HTTP, auth: see download_error
        raise download_error(model_id, error) from None
    return Path(folder), info.sha
