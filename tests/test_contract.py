"""The wire contract, one suite over every tier (see ``tiers.py``): shapes, order, empty
lists, bad input, limits, custom attributes, concurrency and model-load failure."""

from __future__ import annotations

import itertools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from handler import inference
from references import SampleCrossEncoder
from tiers import (  # noqa: F401 - the *_fixture names register fixtures
    HANDLER_ERRORS_AS,
    JSON,
    RuntimeTier,
    Tier,
    direct_tier_fixture,
    endpoint_pool_fixture,
    expected_status,
    skip_unless_kind_available,
    tier_fixture,
)

from sagemaker_reranker.deploy.local.endpoint import LocalEndpoint
from sagemaker_reranker.deploy.local.net import port_open
from sagemaker_reranker.deploy.packaging.build import package

QUERY = "what is the plan for the economy?"
# Every tier's score against the reference's: packed and padded forwards differ by ~1e-5.
TOLERANCE = 1e-4
# The tiny model's classifier scaled up, so that its scores (~2.6e-4 apart in all) spread
# far beyond TOLERANCE: a score swapped between two pairs cannot pass for rounding.
SPREAD = 10_000.0
DOCS = [
    "inflation",
    "tax credit",
    "jobs jobs jobs",
    "the price of energy",
    "we will lower costs for american families",
    "a tax credit for families with children and more work for american workers",
]
PAIRS = [[QUERY, doc] for doc in DOCS] + [["jobs", "build more in america"]]


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode("utf-8")


def assert_close(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert math.isclose(got, want, rel_tol=0, abs_tol=TOLERANCE), (actual, expected)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's tiers serve the tiny model with its classifier scaled by ``SPREAD``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("spread-model")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(SPREAD)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_archive(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package(str(tiny_model_dir), tmp_path_factory.mktemp("archive") / "model.tar.gz").path


@pytest.fixture(scope="session")
def score(tiny_model_dir: Path):
    """Reference scores computed apart from the handler: the sample handler's one padded batch
    through transformers (``bench/reference.py``), not the code under test."""
    reference = SampleCrossEncoder(str(tiny_model_dir))
    return lambda pairs: reference([tuple(pair) for pair in pairs])


def test_the_reference_scores_spread_far_beyond_the_tolerance(score) -> None:
    ordered = sorted(score(PAIRS))
    assert min(b - a for a, b in itertools.pairwise(ordered)) > 10 * TOLERANCE, ordered


# --------------------------------------------------------------------------- valid requests


def test_ping_healthy(tier: Tier) -> None:
    if not tier.http:
        pytest.skip("no /ping without a server: model_fn succeeding is the direct tier's health")
    status, payload = tier.endpoint.ping()
    assert (status, payload["status"]) == (200, "healthy")


def test_each_request_shape_scores_the_same(tier: Tier, score) -> None:
    expected = score(PAIRS)
    for payload in ({"pairs": PAIRS}, {"text_pairs": PAIRS}):
        assert_close(tier.invoke(body_of(payload)).scores(), expected)
    answer = tier.invoke(body_of({"pairs": PAIRS}), content_type="application/json; charset=utf-8")
    assert_close(answer.scores(), expected)
    tei = tier.invoke(body_of({"query": QUERY, "texts": DOCS}))
    assert_close(tei.scores(), score([[QUERY, doc] for doc in DOCS]))
    assert tei.content_type is not None and tei.content_type.startswith(JSON)


def test_scores_keep_input_order(tier: Tier, score) -> None:
    forward = tier.invoke(body_of({"pairs": PAIRS})).scores()
    backward = tier.invoke(body_of({"pairs": PAIRS[::-1]})).scores()
    assert_close(forward, score(PAIRS))
    assert_close(backward, score(PAIRS[::-1]))


def test_empty_lists_score_nothing(tier: Tier) -> None:
    for payload in ({"pairs": []}, {"text_pairs": []}, {"query": QUERY, "texts": []}):
        assert tier.invoke(body_of(payload)).scores() == []


def test_custom_attributes_round_trip(tier: Tier) -> None:
    attributes = "trace_id=7f3a,client=contract-suite"
    answer = tier.invoke(body_of({"pairs": PAIRS[:1]}), custom_attributes=attributes)
    assert answer.status == 200
    assert answer.custom_attributes == attributes
    assert tier.invoke(body_of({"pairs": PAIRS[:1]})).custom_attributes is None


def test_sixteen_parallel_calls_all_correct(tier: Tier, score) -> None:
    requests = [PAIRS[i % len(PAIRS) :] + PAIRS[: i % len(PAIRS)] for i in range(16)]
    requests = [pairs[: 1 + i % len(pairs)] for i, pairs in enumerate(requests)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda pairs: tier.invoke(body_of({"pairs": pairs})), requests))
    for pairs, answer in zip(requests, answers, strict=True):
        assert_close(answer.scores(), score(pairs))


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class Case:
    """One request and what every tier must answer: ``status`` as the handler (or, with
    ``origin="front"``, the runtime front) raises it, and words the message must contain."""

    name: str
    body: bytes
    status: int
    says: str = ""
    content_type: str | None = JSON
    accept: str | None = JSON
    origin: str = "handler"
    claim: int | None = None  # a Content-Length header claiming this many bytes


def raw(text: str) -> bytes:
    return text.encode("utf-8")


def pairs_body(*pairs) -> bytes:
    return body_of({"pairs": list(pairs)})


DEEP = 100_000
BAD_INPUTS = [
    Case("truncated JSON", raw('{"pairs": [["a", "b"]'), 400, "malformed JSON"),
    Case("trailing comma", raw('{"pairs": [["a", "b"],]}'), 400, "malformed JSON"),
    Case("single quotes", raw("{'pairs': [['a', 'b']]}"), 400, "malformed JSON"),
    Case("plain text", raw("rerank these please"), 400, "malformed JSON"),
    Case("UTF-8 BOM", b"\xef\xbb\xbf" + pairs_body(["a", "b"]), 400, "BOM"),
    Case("raw NUL byte in a string", raw('{"pairs": [["a\x00", "b"]]}'), 400, "malformed JSON"),
    Case("invalid UTF-8", b'{"pairs": [["caf\xe9", "b"]]}', 400, "UTF-8"),
    Case("UTF-16 body", '{"pairs": [["a", "b"]]}'.encode("utf-16"), 400, "UTF-8"),
    Case("lone surrogate escape", raw('{"pairs": [["\\ud800", "b"]]}'), 400, "surrogate"),
    Case("empty body", b"", 400, "empty"),
    Case("whitespace body", raw("  \n\t "), 400, "empty"),
    Case("top-level list", raw('[["a", "b"]]'), 400, "expected a JSON object"),
    Case("top-level string", raw('"pairs"'), 400, "expected a JSON object"),
    Case("top-level number", raw("42"), 400, "expected a JSON object"),
    Case("top-level null", raw("null"), 400, "expected a JSON object"),
    Case("empty object", raw("{}"), 400, "do not fit"),
    Case("misspelled key", body_of({"pair": [["a", "b"]]}), 400, "'pair'"),
    Case("extra key", body_of({"pairs": [["a", "b"]], "top_n": 3}), 400, "'top_n'"),
    Case("two shapes at once", body_of({"pairs": [], "text_pairs": []}), 400, "do not fit"),
    Case("query without texts", body_of({"query": "q"}), 400, "do not fit"),
    Case("texts without query", body_of({"texts": ["a"]}), 400, "do not fit"),
    Case("pairs is a string", body_of({"pairs": "a,b"}), 400, "'pairs' must be a list"),
    Case("pairs is an object", body_of({"pairs": {"a": "b"}}), 400, "'pairs' must be a list"),
    Case("pairs is null", body_of({"pairs": None}), 400, "'pairs' must be a list"),
    Case("pair of one", pairs_body(["a"]), 400, "pairs[0] must be [query, document]"),
    Case("pair of three", pairs_body(["a", "b", "c"]), 400, "got 3 items"),
    Case("empty pair", pairs_body([]), 400, "got 0 items"),
    Case("pair is a string", pairs_body("a b"), 400, "pairs[0] must be"),
    Case("pair is an object", pairs_body({"query": "a", "doc": "b"}), 400, "pairs[0] must be"),
    Case("second pair bad", pairs_body(["a", "b"], ["c"]), 400, "pairs[1]"),
    Case("null query", pairs_body([None, "b"]), 400, "pairs[0][0] must be a string, got null"),
    Case("null document", pairs_body(["a", None]), 400, "pairs[0][1] must be a string"),
    Case("number document", pairs_body(["a", 3]), 400, "got a number"),
    Case("boolean query", pairs_body([True, "b"]), 400, "got a boolean"),
    Case("object document", pairs_body(["a", {"text": "b"}]), 400, "got an object"),
    Case("list document", pairs_body(["a", ["b"]]), 400, "got a list"),
    Case("bad text_pairs", body_of({"text_pairs": [["a"]]}), 400, "text_pairs[0]"),
    Case("number query (TEI)", body_of({"query": 1, "texts": ["a"]}), 400, "'query' must be"),
    Case("texts is a string", body_of({"query": "q", "texts": "abc"}), 400, "'texts' must be"),
    Case("null in texts", body_of({"query": "q", "texts": ["a", None]}), 400, "texts[1]"),
    Case("NaN literal", raw('{"pairs": [["a", NaN]]}'), 400, "NaN"),
    Case("Infinity literal", raw('{"pairs": [["a", Infinity]]}'), 400, "Infinity"),
    Case("-Infinity literal", raw('{"query": -Infinity, "texts": []}'), 400, "-Infinity"),
    Case("deeply nested list", raw("[" * DEEP + "]" * DEEP), 400, "nested too deeply"),
    Case(
        "deeply nested pair",
        raw('{"pairs": [' + "[" * DEEP + "]" * DEEP + "]}"),
        400,
        "nested too deeply",
    ),
    Case("10,000 pairs", pairs_body(*[["q", "d"]] * 10_000), 413, "RERANKER_MAX_PAIRS"),
    Case(
        "too many tokens",
        pairs_body(*[["plan " * 8, "the economy " * 220]] * 600),
        413,
        "RERANKER_MAX_TOKENS",
    ),
    Case("CSV content type", raw("a,b"), 415, "unsupported content type", content_type="text/csv"),
    Case("text/plain content type", pairs_body(["a", "b"]), 415, "text/plain", "text/plain"),
    Case(
        "form content type (curl's default)",
        pairs_body(["a", "b"]),
        415,
        "unsupported content type",
        content_type="application/x-www-form-urlencoded",
    ),
    Case("CSV accept", pairs_body(["a", "b"]), 406, "unsupported accept", accept="text/csv"),
    Case("XML accept", pairs_body(["a", "b"]), 406, "application/xml", accept="application/xml"),
    Case("body over 6 MiB", pairs_body(["q", "x" * (6 << 20)]), 413, "exceeded", origin="front"),
    Case(
        "a 100 MB Content-Length claim",
        pairs_body(["a", "b"]),
        413,
        "exceeded",
        origin="front",
        claim=100 << 20,
    ),
]
UNICODE_OK = [
    Case("emoji", pairs_body(["🙂 plan?", "👩‍👩‍👧 families 🇺🇸"]), 200),
    Case("right-to-left", pairs_body(["ما هي الخطة؟", "שלום \u202eעולם"]), 200),
    Case("zero-width", pairs_body(["plan\u200b", "\u200d\ufeffeconomy\u2060"]), 200),
    Case("NUL escape", raw('{"pairs": [["a\\u0000b", "\\u0000"]]}'), 200),
    Case("combining and CJK", pairs_body(["e\u0301conomy", "経済計画 경제"]), 200),
    Case("empty strings", pairs_body(["", ""]), 200),
]


def send(tier: Tier, case: Case):
    if case.claim is not None:
        return tier.claim(case.claim, case.body)
    return tier.invoke(case.body, case.content_type, case.accept)


def check_case(tier: Tier, case: Case, follow_up, expected_follow_up) -> list[str]:
    """Problems with ``tier``'s answer to ``case`` (an empty list when all is right)."""
    answer = send(tier, case)
    want = expected_status(tier.kind, case.status, case.origin)
    problems = []
    if answer.status != want:
        problems.append(f"status {answer.status}, expected {want}: {answer.message()[:200]!r}")
    if want == 200:
        if answer.status == 200 and len(answer.scores()) != len(json.loads(case.body)["pairs"]):
            problems.append("wrong number of scores")
    # Case-blind: the HF toolkit (mms tier, AWS) decodes UTF-8 itself, before the handler,
    # and reports Python's "'utf-8' codec can't decode byte ..." for invalid bodies.
    elif case.says.lower() not in answer.message().lower():
        problems.append(f"message {answer.message()[:200]!r} does not say {case.says!r}")
    if b"Traceback" in answer.body or b'File "' in answer.body:
        problems.append("traceback in the body")
    if max(answer.status, answer.wire_status or 0) >= 500:
        problems.append(f"5xx answer ({answer.wire_status})")
    model_error = (answer.wire_status, answer.error_code) == (424, "ModelError")
    if (
        isinstance(tier, RuntimeTier)
        and case.origin == "handler"
        and want >= 400
        and not model_error
    ):
        problems.append(f"runtime sent {answer.wire_status} {answer.error_code}")
    next_answer = tier.invoke(follow_up)
    if next_answer.status != 200:
        problems.append(f"the next valid request failed with {next_answer.status}")
    else:
        try:
            assert_close(next_answer.scores(), expected_follow_up)
        except AssertionError:
            problems.append("the next valid request scored differently")
    return [f"{case.name}: {problem}" for problem in problems]


def test_bad_inputs_rejected_with_clear_errors(tier: Tier, score, capsys) -> None:
    """The bad-input table: every malformed request gets its status and a message naming the
    problem, no traceback, no 5xx, and the next valid request is answered correctly."""
    follow_up, expected = pairs_body(*PAIRS), score(PAIRS)
    cases = [case for case in BAD_INPUTS if tier.http or case.origin == "handler"]
    assert len(cases) >= 40
    problems = [p for case in cases for p in check_case(tier, case, follow_up, expected)]
    wrong = {problem.split(":")[0] for problem in problems}
    unicode_problems = [p for c in UNICODE_OK for p in check_case(tier, c, follow_up, expected)]
    skipped = len(BAD_INPUTS) - len(cases)
    with capsys.disabled():
        print(
            f"\n[{tier.name}] bad inputs: {len(cases)} tried, {len(cases) - len(wrong)} rejected "
            f"correctly{f' ({skipped} runtime-front limits n/a)' if skipped else ''}; "
            f"unicode edge cases: {len(UNICODE_OK)} tried, "
            f"{len(UNICODE_OK) - len({p.split(':')[0] for p in unicode_problems})} succeeded"
        )
    assert not problems + unicode_problems, "\n".join(problems + unicode_problems)


def test_statuses_per_tier_table_is_complete() -> None:
    assert set(HANDLER_ERRORS_AS) == {"direct", "inprocess", "mms"}
    assert expected_status("mms", 413) == 400
    assert expected_status("mms", 413, origin="front") == 413
    assert expected_status("inprocess", 415) == 415


# --------------------------------------------------------------------------- model-load failure

BROKEN_ENV = {"RERANKER_DTYPE": "float64"}  # a real model_fn failure a user can cause


@pytest.mark.parametrize(
    "kind", ["direct", "inprocess", pytest.param("mms", marks=[pytest.mark.slow, pytest.mark.mms])]
)
def test_model_load_failure_is_reported(kind: str, tiny_archive, tiny_model_dir, monkeypatch):
    """``model_fn`` raises: /ping answers 500 with the reason and the server stays up."""
    skip_unless_kind_available(kind)
    if kind == "direct":
        monkeypatch.setenv("RERANKER_DTYPE", BROKEN_ENV["RERANKER_DTYPE"])
        with pytest.raises(ValueError, match="RERANKER_DTYPE must be one of"):
            inference.model_fn(str(tiny_model_dir))
        return
    with LocalEndpoint(model_data=tiny_archive, env=BROKEN_ENV, server=kind) as endpoint:
        status, payload = endpoint.ping()
        assert status == 500
        assert "RERANKER_DTYPE must be one of" in payload["reason"]
        assert endpoint.health() == (False, payload["reason"])
        answer, body, _ = endpoint.request("POST", "/invocations", pairs_body(["a", "b"]))
        assert answer == 503 and b"RERANKER_DTYPE" in body
        runtime = RuntimeTier(endpoint, kind).invoke(pairs_body(["a", "b"]))
        assert (runtime.wire_status, runtime.error_code) == (400, "ValidationError")
        assert "not in service" in runtime.message()
        assert endpoint.ping()[0] == 500, "still up after the failed calls"
        port = endpoint.port
    assert not port_open("127.0.0.1", port)
