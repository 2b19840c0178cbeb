"""``serve``'s address checks, its early-exit cause and its quiet start (issue 24, items 4
and 10): each a one-line error with exit code 2, or a start of one line then "Serving"."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from aws_fixtures import Cli
from test_local_serve import URL, Serve

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint, LocalEndpointError

# A name no resolver knows: the address check must say so before anything is extracted.
BAD_HOST = "999.1.1.1"


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, lines
    return errors[0]


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(tiny_archive: Path, port: str) -> None:
    line = one_error_line(Cli()("serve", "--model-data", str(tiny_archive), "--port", port))
    assert f"'--port': {port} is not in the range 0<=x<=65535" in line


@pytest.mark.parametrize("host", ["::1", "[::1]", "fe80::1"])
def test_an_ipv6_host_is_refused_in_one_line(tiny_archive: Path, host: str) -> None:
    line = one_error_line(Cli()("serve", "--model-data", str(tiny_archive), "--host", host))
    assert f"--host {host}: the local server listens on IPv4 only; use 127.0.0.1" in line


def test_a_host_that_does_not_resolve_is_refused_with_its_cause(tiny_archive: Path) -> None:
    result = Cli()("serve", "--model-data", str(tiny_archive), "--port", "0", "--host", BAD_HOST)
    line = one_error_line(result)
    assert line.startswith(f"Error: cannot listen on {BAD_HOST}:0: ")
    assert line.split(f"{BAD_HOST}:0: ", 1)[1].strip(), "the cause is missing"


def test_the_server_exiting_before_it_listens_names_its_cause(tiny_model_dir, tmp_path) -> None:
    """The server's own refusal (its log streamed elsewhere, as ``serve`` streams it to the
    terminal) reaches the error the caller sees."""
    with open(tmp_path / "server.log", "wb") as log:
        endpoint = LocalEndpoint(model_dir=tiny_model_dir, host=BAD_HOST, port=0, log=log)
        with pytest.raises(LocalEndpointError) as error:
            endpoint.start()
    message = str(error.value)
    assert "exited with code 2 before listening: " in message
    cause = message.split("before listening: ", 1)[1]
    assert cause.startswith(f"cannot listen on {BAD_HOST}:0: ") and "\n" not in cause
    assert len(cause) > len(f"cannot listen on {BAD_HOST}:0: ")


@pytest.mark.slow
def test_a_quiet_start_one_loading_line_then_serving(tiny_archive: Path, tmp_path) -> None:
    serve = Serve(tmp_path, "--model-data", str(tiny_archive), "--port", "0")
    port = int(URL.search(serve.wait_for(r"^Serving .* at http://")).group(1))
    assert serve.stop(signal.SIGINT) == 0
    before = "".join(serve.output["stderr"]).split("stopping")[0]
    assert "/ping" not in before, before
    lines = before.splitlines()
    assert [line for line in lines if line.startswith("loading")] == [f"loading {tiny_archive}…"]
    # Then the handler's model line, "ready", the start's one probe: not ~40 /ping polls.
    assert len(lines) <= 5, before
    serve.assert_clean(port)


def test_invoking_a_name_the_local_server_does_not_serve_names_the_one_it_does(endpoint) -> None:
    result = Cli()(
        "invoke", "not-this-one", "-q", "what?", "--doc", "jobs", "--endpoint-url", endpoint.url
    )
    assert result.exit_code != 0, result.output
    line = " ".join(result.output.split())
    assert "Endpoint not-this-one of account 000000000000 not found." in line
    assert f"serves one endpoint, '{endpoint.endpoint_name}' (set by serve --endpoint-name)" in line
