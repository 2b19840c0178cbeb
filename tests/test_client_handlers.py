"""Content handlers and error unwrapping: the formats, and a clear error for every bad answer."""

from __future__ import annotations

import json

import pytest
from sagemaker_inference.errors import GenericInferenceToolkitError

from sagemaker_reranker.client import (
    ContentHandler,
    HFTextClassificationHandler,
    PairsHandler,
    TEIHandler,
    TextPairsHandler,
)
from sagemaker_reranker.client.errors import unwrap_container_error

PAIRS = [("q", "first"), ("q", 'say "hi"\n'), ("q", "日本")]


def test_request_bodies():
    assert json.loads(PairsHandler().transform_input(PAIRS)) == {"pairs": [list(p) for p in PAIRS]}
    assert json.loads(TextPairsHandler().transform_input(PAIRS)) == {
        "text_pairs": [list(p) for p in PAIRS]
    }
    assert json.loads(TEIHandler().transform_input(PAIRS)) == {
        "query": "q",
        "texts": ["first", 'say "hi"\n', "日本"],
        "raw_scores": True,
        "truncate": True,
    }
    assert json.loads(HFTextClassificationHandler().transform_input(PAIRS[:1])) == {
        "inputs": [{"text": "q", "text_pair": "first"}],
        "parameters": {"function_to_apply": "none", "truncation": True},
    }
    with pytest.raises(ValueError, match="one query per request, got 2"):
        TEIHandler().transform_input([("a", "x"), ("b", "y")])


def test_tei_results_go_back_by_index():
    body = json.dumps(
        [{"index": 2, "score": 9.0}, {"index": 0, "score": 5.0}, {"index": 1, "score": 1.0}]
    )
    assert TEIHandler().transform_output(body.encode()) == [5.0, 1.0, 9.0]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([{"index": 0, "score": 1.0}, {"index": 0, "score": 2.0}], "index 0 appears twice"),
        ([{"index": 5, "score": 1.0}], "out-of-range index"),
        ([{"score": 1.0}], "out-of-range index"),
        ({"error": "x"}, r"expected \[\{index, score\}"),
    ],
)
def test_tei_bad_results_are_errors(body, problem):
    with pytest.raises(ValueError, match=problem):
        TEIHandler().transform_output(json.dumps(body).encode())


def test_hf_pipeline_results_in_both_shapes():
    flat = [{"label": "LABEL_0", "score": 1.5}, {"label": "LABEL_0", "score": -2.0}]
    nested = [[item] for item in flat]
    handler = HFTextClassificationHandler()
    assert handler.transform_output(json.dumps(flat).encode()) == [1.5, -2.0]
    assert handler.transform_output(json.dumps(nested).encode()) == [1.5, -2.0]
    with pytest.raises(ValueError, match="result 1 is not one"):
        handler.transform_output(json.dumps([flat[0], [flat[0], flat[1]]]).encode())


def test_unreadable_json_is_an_error_naming_the_body():
    with pytest.raises(ValueError, match=r"response is not JSON .*'<html>"):
        PairsHandler().transform_output(b"<html>502 Bad Gateway</html>")


def test_a_custom_handler_needs_only_the_documented_interface():
    class CsvHandler(ContentHandler):
        content_type = accept = "text/csv"

        def transform_input(self, pairs):
            return "\n".join(f"{q},{d}" for q, d in pairs).encode()

        def transform_output(self, body):
            return [float(x) for x in body.decode().split(",")]

    handler = CsvHandler()
    assert handler.transform_input([("a", "b")]) == b"a,b"
    assert handler.transform_output(b"1,2.5") == [1.0, 2.5]
    assert handler.max_pairs_per_request is None and not handler.one_query_per_request
    with pytest.raises(NotImplementedError):
        ContentHandler().transform_input([])


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        # The HF toolkit on AWS: str(GenericInferenceToolkitError) inside the model server's body.
        (
            400,
            json.dumps(
                {
                    "code": 400,
                    "type": "InternalServerException",
                    "message": str(GenericInferenceToolkitError(413, "it's too big: 2000 pairs")),
                },
                indent=2,
            ),
            (413, "it's too big: 2000 pairs"),
        ),
        (
            400,
            "(415, 'unsupported content type', 'unsupported content type')",
            (415, "unsupported content type"),
        ),
        (400, "(413, 'cut off by the runtime", (413, "cut off by the runtime")),  # truncated
        (
            413,
            json.dumps({"error": "batch size 40 > 32", "error_type": "validation"}),
            (413, "batch size 40 > 32"),
        ),
        (413, "plain text from the handler", (413, "plain text from the handler")),
        (500, "  ", (500, "")),
    ],
)
def test_unwrap_container_error(status, message, expected):
    assert unwrap_container_error(status, message) == expected
