"""Local mode hosting inference components: one endpoint, a worker per component, routed by
the component header as the SageMaker runtime routes it (docs/local-mode.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from sagemaker_reranker.client import SagemakerEndpointCrossEncoder
from sagemaker_reranker.deploy.cli import main
from sagemaker_reranker.deploy.local.components import COMPONENT_HEADER, NO_HEADER
from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.local.server import LocalSettings
from sagemaker_reranker.deploy.packaging.build import package

PAIRS = [
    ("What is the plan for the economy?", "We will lower costs for families."),
    ("What is the plan for the economy?", "It rained all week in the north."),
    ("capital of France", "Paris is the capital and largest city of France."),
]


@pytest.fixture(scope="module")
def two_label_archive(tiny_two_label_dir: Path, tmp_path_factory) -> Path:
    return package(str(tiny_two_label_dir), tmp_path_factory.mktemp("two") / "model.tar.gz").path


@pytest.fixture(scope="module")
def shared(tiny_archive: Path, two_label_archive: Path):
    """One local endpoint hosting two components, each a different tiny model."""
    components = {"bert": tiny_archive, "two-label": two_label_archive}
    with LocalEndpoint(components=components, endpoint_name="shared") as endpoint:
        yield endpoint
    assert not port_open("127.0.0.1", endpoint.port)


def direct_scores(model_dir: Path) -> list[float]:
    """The handler's own scores for ``PAIRS``, computed in this process."""
    from handler import inference

    model = inference.model_fn(str(model_dir))
    body = json.dumps({"pairs": [list(pair) for pair in PAIRS]}).encode()
    return json.loads(inference.transform_fn(model, body, "application/json", None))["scores"]


def client(endpoint: LocalEndpoint, component: str | None) -> SagemakerEndpointCrossEncoder:
    return SagemakerEndpointCrossEncoder(
        endpoint_name=endpoint.endpoint_name,
        client=endpoint.runtime_client(),
        inference_component_name=component,
        max_concurrency=1,
    )


def test_each_component_serves_its_own_model(shared, tiny_model_dir, tiny_two_label_dir):
    bert = client(shared, "bert").score(PAIRS)
    two_label = client(shared, "two-label").score(PAIRS)
    assert bert == pytest.approx(direct_scores(tiny_model_dir), abs=1e-6)
    assert two_label == pytest.approx(direct_scores(tiny_two_label_dir), abs=1e-6)
    assert bert != pytest.approx(two_label, abs=1e-3)  # two models, not one answering twice


def test_calls_without_the_header_are_refused_as_the_runtime_does(shared):
    runtime = shared.runtime_client()
    body = json.dumps({"pairs": [list(PAIRS[0])]}).encode()
    with pytest.raises(ClientError) as missing:
        runtime.invoke_endpoint(EndpointName="shared", Body=body, ContentType="application/json")
    error = missing.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == NO_HEADER
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint(
            EndpointName="shared", Body=body, ContentType="application/json",
            InferenceComponentName="nope",
        )  # fmt: skip
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert unknown.value.response["Error"]["Message"] == "Inference component nope not found."


def test_container_route_and_ping_know_the_components(shared):
    body = json.dumps({"pairs": [list(PAIRS[0])]}).encode()
    status, answer, _ = shared.request("POST", "/invocations", body)
    assert status == 400 and json.loads(answer)["message"] == NO_HEADER
    status, answer, _ = shared.request("POST", "/invocations", body, {COMPONENT_HEADER: "bert"})
    assert status == 200 and len(json.loads(answer)["scores"]) == 1
    assert shared.ping() == (
        200,
        {"status": "healthy", "components": {"bert": "healthy", "two-label": "healthy"}},
    )


def test_settings_carry_components_and_refuse_what_aws_would():
    settings = LocalSettings(
        components=({"name": "bert", "model_dir": "/m", "env": {"A": "1"}},),
        scale_to_zero_after=30,
    )
    assert LocalSettings.from_json(settings.to_json()) == settings
    with pytest.raises(ValueError, match="not a valid inference component name"):
        LocalSettings(components=({"name": "bad_name"},))
    with pytest.raises(ValueError, match="only inference components scale to zero"):
        LocalSettings(scale_to_zero_after=30)
    with pytest.raises(ValueError, match="repeat"):
        LocalSettings(components=({"name": "a"}, {"name": "a"}))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--model-data", "bad_name=x.tar.gz", "--model-data", "b=y.tar.gz"), "not a valid"),
        (("--model-data", "a=x.tar.gz", "--model-data", "a=y.tar.gz"), "named twice"),
        (("--model-data", "a=x.tar.gz", "--model-data", "y.tar.gz"), "NAME=ARCHIVE"),
        (("--model-data", "a=missing.tar.gz", "--model-data", "b=y"), "does not exist"),
        (("--model-data", "x.tar.gz", "--scale-to-zero-after", "1m"), "only components"),
        (("--model-data", "a=x", "--model-data", "b=y", "--scale-to-zero-after", "soon"), "soon"),
        (("--model-data", "a=x", "--model-data", "b=y", "--server", "mms"), "--server worker"),
    ],
)
def test_serve_refuses_bad_components_in_one_line(args, says):
    result = CliRunner().invoke(main, ["serve", *args, "--port", "0"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.output


def test_eval_scores_each_component_and_names_the_missing_header(shared, tmp_path):
    from test_eval import JUDGED_PAIRS, RUN, write_beir, write_trec

    data = write_beir(tmp_path / "data")
    run = write_trec(tmp_path / "run.trec", RUN)
    system = ("--endpoint-url", shared.url)
    base = ("eval", "--data", data, "--candidates", run, *system, "--endpoint-name", "shared")
    both = CliRunner().invoke(
        main,
        [*map(str, base), *system, "--component", "bert", "--component", "two-label", "--json"],
    )
    assert both.exit_code == 0, both.output
    systems = json.loads(both.stdout)["systems"]
    assert [s["label"].rsplit("/", 1)[1] for s in systems] == ["bert", "two-label"]
    assert [s["pairs"] for s in systems] == [JUDGED_PAIRS, JUDGED_PAIRS]
    bare = CliRunner().invoke(main, list(map(str, base)))
    assert bare.exit_code == 1 and NO_HEADER in bare.output, bare.output
    archive = CliRunner().invoke(
        main, [*map(str, base[:5]), "--model-data", "x.tar.gz", "--component", "bert"]
    )
    assert archive.exit_code == 2 and "--component names a component" in archive.output
