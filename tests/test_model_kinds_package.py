"""``package`` for every scoring kind: detection, the manifest's fields, one-line refusals, the
hub path (through a Hugging Face cache built here, never the network) and the size record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import constants as hub_constants
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.packaging.build import package
from sagemaker_reranker.deploy.packaging.extract import extract_archive
from sagemaker_reranker.deploy.packaging.kinds import detect_kind
from sagemaker_reranker.deploy.packaging.manifest import MANIFEST, PackageError, read_manifest
from sagemaker_reranker.inference.reranker_contract import DEFAULT_INSTRUCTION

HUB_ID = "Qwen/Qwen3-Reranker-0.6B"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_cli(*args: str):
    result = CliRunner().invoke(main, ["package", *args])
    assert "Traceback" not in result.output
    return result


def copy_model(source: Path, dest: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(source, dest)
    for name in drop:
        (dest / name).unlink()
    return dest


def test_each_offline_kind_is_detected_and_recorded(
    tiny_model_dir, tiny_two_label_dir, tiny_qwen3_dir, tiny_qwen3_seqcls_dir, tmp_path
):
    expected = {
        tiny_model_dir: ("classifier", None, "one-logit head"),
        tiny_two_label_dir: ("classifier", None, "two-label head: logit[1] − logit[0]"),
        tiny_qwen3_dir: ("yes-no", "qwen3-reranker", "logit(yes) − logit(no)"),
        tiny_qwen3_seqcls_dir: ("classifier", "qwen3-reranker", "Qwen3-Reranker prompt"),
    }
    for number, (model, (scoring, prompt, words)) in enumerate(expected.items()):
        out = tmp_path / f"{number}.tar.gz"
        result = run_cli("--model", str(model), "-o", str(out))
        assert result.exit_code == 0, result.output
        scoring_line = next(line for line in result.output.splitlines() if "scoring" in line)
        assert scoring_line.startswith(f"scoring {scoring} (") and words in scoring_line
        manifest = read_manifest(out)
        assert (manifest.scoring, manifest.prompt) == (scoring, prompt)
        assert manifest.instruction == (DEFAULT_INSTRUCTION if prompt else None)
        # The JSON keys the handler reads, spelled exactly.
        with tarfile.open(out, "r:gz") as tar:
            raw = json.loads(tar.extractfile(MANIFEST).read())
        assert raw["scoring"] == scoring and raw["instruction"] == manifest.instruction


def test_instruction_is_recorded_for_prompted_kinds_and_refused_for_plain_ones(
    tiny_qwen3_dir, tiny_model_dir, tmp_path
):
    mine = "Given a question about the economy, find the passages that answer it"
    result = run_cli("--model", str(tiny_qwen3_dir), "-o", str(tmp_path / "q.tar.gz"),
                     "--instruction", mine)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"instruction {mine}" in result.output
    assert read_manifest(tmp_path / "q.tar.gz").instruction == mine
    plain = run_cli("--model", str(tiny_model_dir), "-o", str(tmp_path / "b.tar.gz"),
                    "--instruction", mine)  # fmt: skip
    assert plain.exit_code == 2
    assert "--instruction applies to prompted rerankers" in plain.output
    assert len(plain.output.strip().splitlines()) == 1
    assert not (tmp_path / "b.tar.gz").exists()
    too_long = run_cli("--model", str(tiny_qwen3_dir), "-o", str(tmp_path / "l.tar.gz"),
                       "--instruction", "x" * 4097)  # fmt: skip
    assert too_long.exit_code == 2 and "1 to 4096 characters" in too_long.output


def test_a_causal_lm_not_known_as_a_reranker_needs_scoring_yes_no(tiny_qwen3_dir, tmp_path):
    # Without the model card's pipeline_tag and with a name that says nothing, it could be
    # any chat model: packaging it as a reranker must be asked for.
    chat = copy_model(tiny_qwen3_dir, tmp_path / "my-chat-model", drop=("README.md",))
    refused = run_cli("--model", str(chat), "-o", str(tmp_path / "a.tar.gz"))
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1
    assert "causal LM (Qwen3ForCausalLM) not known as a reranker" in lines[0]
    assert "--scoring yes-no" in lines[0]
    assert not (tmp_path / "a.tar.gz").exists()
    explicit = run_cli(
        "--model", str(chat), "-o", str(tmp_path / "b.tar.gz"), "--scoring", "yes-no"
    )
    assert explicit.exit_code == 0, explicit.output
    assert read_manifest(tmp_path / "b.tar.gz").scoring == "yes-no"
    # The name alone is enough for the published rerankers.
    named = copy_model(chat, tmp_path / "Qwen3-Reranker-4B")
    assert package(str(named), tmp_path / "c.tar.gz").manifest.scoring == "yes-no"


@pytest.mark.parametrize(
    ("fixture", "scoring", "words"),
    [
        ("tiny_qwen3_dir", "classifier", "no classification head"),
        ("tiny_model_dir", "yes-no", "--scoring yes-no needs a causal LM"),
        ("tiny_qwen3_seqcls_dir", "yes-no", "is a Qwen3ForSequenceClassification"),
    ],
)
def test_a_scoring_the_model_cannot_do_is_refused(request, tmp_path, fixture, scoring, words):
    model = request.getfixturevalue(fixture)
    result = run_cli("--model", str(model), "-o", str(tmp_path / "m.tar.gz"), "--scoring", scoring)
    assert result.exit_code == 2
    assert words in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.tar.gz").exists()


def _edit_config(model: Path, **changes) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    (model / "config.json").write_text(json.dumps(config))


def test_heads_that_are_not_rerankers_are_refused(tiny_model_dir, tmp_path):
    three = copy_model(tiny_model_dir, tmp_path / "three")
    _edit_config(three, id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": 0, "b": 1, "c": 2})
    with pytest.raises(PackageError, match="3-label classification head"):
        package(str(three), tmp_path / "a.tar.gz")
    bare = copy_model(tiny_model_dir, tmp_path / "bare")
    _edit_config(bare, architectures=["BertModel"])
    with pytest.raises(PackageError, match=r"\(BertModel\) has no scoring head"):
        package(str(bare), tmp_path / "b.tar.gz")


def test_a_tokenizer_without_single_yes_no_tokens_is_refused(tiny_qwen3_dir, tmp_path):
    model = copy_model(tiny_qwen3_dir, tmp_path / "Qwen3-Reranker-broken")
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["yes_"] = vocab.pop("yes")
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(PackageError, match="no single 'yes' token"):
        package(str(model), tmp_path / "m.tar.gz")


@pytest.mark.parametrize("fixture", ["tiny_qwen3_dir", "tiny_qwen3_seqcls_dir", "tiny_model_dir"])
def test_recorded_size_matches_the_loaded_model(request, tmp_path, fixture):
    model_dir = request.getfixturevalue(fixture)
    manifest = package(str(model_dir), tmp_path / "m.tar.gz").manifest
    assert manifest.weights_bytes == (model_dir / "model.safetensors").stat().st_size
    loader = (
        AutoModelForCausalLM if fixture == "tiny_qwen3_dir" else AutoModelForSequenceClassification
    )
    model = loader.from_pretrained(model_dir)
    assert manifest.parameters == sum(p.numel() for p in model.parameters())
    looked_up = sum(
        module.weight.numel() for module in model.modules() if type(module).__name__ == "Embedding"
    )
    # A tied LM head is the embedding table itself; an untied one would be left out too.
    assert manifest.body_parameters == manifest.parameters - looked_up


def test_a_truncated_safetensors_file_is_refused(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(PackageError, match=r"model\.safetensors is truncated"):
        package(str(model), tmp_path / "m.tar.gz")


def test_detection_without_a_config_uses_the_name_or_leaves_it_to_the_handler():
    assert detect_kind(None, HUB_ID).scoring == "yes-no"
    assert detect_kind(None, "BAAI/bge-reranker-base").scoring is None
    assert detect_kind(None, "BAAI/bge-reranker-base", "classifier").scoring == "classifier"


# ------------------------------------------------------------------------ the hub path


def fake_hub_cache(cache: Path, model_dir: Path, repo: str, drop: tuple[str, ...] = ()) -> Path:
    """``repo`` at ``COMMIT`` in a Hugging Face cache, laid out as ``huggingface_hub`` writes
    it (blobs, a snapshot of links to them, refs/main), with the slow-tokenizer files a hub
    Qwen repo has next to tokenizer.json."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    blobs, snapshot = folder / "blobs", folder / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    extra = {
        "vocab.json": json.dumps(tokenizer["model"]["vocab"]),
        "merges.txt": "#version: 0.2\n"
        + "".join(
            (" ".join(merge) if isinstance(merge, list) else merge) + "\n"
            for merge in tokenizer["model"]["merges"]
        ),
        "added_tokens.json": json.dumps(
            {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
        ),
        ".gitattributes": "*.safetensors filter=lfs\n",
    }
    files = {path.name: path.read_bytes() for path in model_dir.iterdir() if path.is_file()}
    files.update({name: text.encode() for name, text in extra.items()})
    for number, (name, data) in enumerate(sorted(files.items())):
        if name in drop:
            continue
        blob = blobs / f"{number:040x}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return cache


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_qwen3_reranker_from_the_hub_cache_through_the_cli(tiny_qwen3_dir, offline_hub, tmp_path):
    """``package --model Qwen/Qwen3-Reranker-0.6B`` in a real process: the hub code path,
    served by the cache (no model card, so the id alone makes it a yes-no reranker)."""
    fake_hub_cache(offline_hub, tiny_qwen3_dir, HUB_ID, drop=("README.md",))
    out = tmp_path / "qwen3.tar.gz"
    env = {**os.environ, "HF_HUB_CACHE": str(offline_hub), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sagemaker-reranker")), "package", "--model", HUB_ID,
         "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"source  {HUB_ID} @ {COMMIT}" in done.stdout
    assert "scoring yes-no (logit(yes) − logit(no))" in done.stdout
    manifest = read_manifest(out)
    assert manifest.revision == COMMIT and manifest.scoring == "yes-no"
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer.json"):
        assert name in manifest.files
    assert ".gitattributes" not in manifest.files
    # What the endpoint gets loads, and its tokenizer has the tokens yes-no scoring reads.
    model_dir = extract_archive(out, tmp_path / "extracted")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.convert_tokens_to_ids(["yes", "no"]) == AutoTokenizer.from_pretrained(
        tiny_qwen3_dir
    ).convert_tokens_to_ids(["yes", "no"])
    AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)


def test_converted_classifier_from_the_hub_cache(tiny_qwen3_seqcls_dir, offline_hub, tmp_path):
    repo = "example/Qwen3-Reranker-0.6B-seq-cls"
    fake_hub_cache(offline_hub, tiny_qwen3_seqcls_dir, repo)
    result = package(repo, tmp_path / "m.tar.gz", scoring="auto")
    # The name says Qwen3-Reranker, but config.json says classifier: the config decides.
    assert (result.manifest.scoring, result.manifest.prompt) == ("classifier", "qwen3-reranker")
    assert result.manifest.revision == COMMIT


def test_without_weights_the_cached_config_decides(tiny_qwen3_seqcls_dir, offline_hub, tmp_path):
    repo = "example/converted-reranker"
    fake_hub_cache(offline_hub, tiny_qwen3_seqcls_dir, repo)
    result = package(repo, tmp_path / "m.tar.gz", weights=False)
    assert result.manifest.weights is False
    assert (result.manifest.scoring, result.manifest.prompt) == ("classifier", "qwen3-reranker")
    assert result.manifest.weights_bytes == 0 and result.manifest.parameters is None
