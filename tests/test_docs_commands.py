"""Every command and code block in README.md and docs/*.md, run as written.

Which blocks run: fenced ``bash``/``sh``/``shell`` and ``python``/``py`` blocks, in page
order, unless the last non-blank line before the fence is ``<!-- not-run: REASON -->``
(real AWS, a hub download, a package install, ``make demo``/``make test`` themselves). Blocks
in any other language (``text``, ``json``, diagrams) are output and never run. New pages and
blocks are picked up as they are written; docs/development.md says the same for writers.

What each page's blocks run against, in a fresh working directory of their own:

- ``my-reranker/``: a tiny generated reranker standing in for the reader's model directory,
  and ``model.tar.gz``, that directory packaged (left out when the page packages one itself);
- AWS: a moto server on 127.0.0.1 (``AWS_ENDPOINT_URL``, fake credentials, ``us-east-1``,
  no AWS config files); no hub (``HF_HUB_OFFLINE=1``);
- local mode: a block that is one ``sagemaker-reranker serve …`` command starts that server
  in the background, as a second terminal would; the test waits until ``/ping`` answers and
  stops it (Ctrl-C) after the page's last block, or before another ``serve`` takes its port.
  A page whose blocks use port 8080 without a ``serve`` block gets ``sagemaker-reranker
  serve --model-data model.tar.gz`` started for it.
- Port numbers (``--port N``, ``127.0.0.1:N``, ``localhost:N``) are replaced by free ports,
  the same number by the same free port throughout a page.

Each shell block runs in its own ``bash -euo pipefail`` (no ``cd`` or ``export`` carries over
to the next block); each Python block is a complete script run by this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
PORT = re.compile(r"(?<=--port )\d{2,5}\b|(?<=127\.0\.0\.1:)\d{2,5}\b|(?<=localhost:)\d{2,5}\b")
SERVE = re.compile(r"^sagemaker-reranker serve\b")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")
COMMAND_WORDS = ("sagemaker-reranker ", "$ sagemaker-reranker ", "pip install ", "make ")
SECRET = "FAKE/DocsCommands+Secret-never-printed-7d1e"
BLOCK_TIMEOUT = 240
SERVER_START_TIMEOUT = 240


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.not_run is None and self.lang in SHELL | PYTHON

    @property
    def command(self) -> str:
        """The shell block as one logical line per command, comments left out."""
        joined = re.sub(r"\s*\\\n\s*", " ", self.code)
        lines = [line.strip() for line in joined.splitlines()]
        return "\n".join(line for line in lines if line and not line.startswith("#"))

    @property
    def is_serve(self) -> bool:
        return self.lang in SHELL and bool(SERVE.match(self.command))


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, with the not-run marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = len(opening["indent"])
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{index + 1}: unclosed code fence")
        body = "\n".join(line[indent:] for line in lines[index + 1 : end])
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        marker = NOT_RUN.match(before)
        reason = marker["reason"] if marker else None
        found.append(Block(page, index + 1, opening["lang"].lower(), body, reason))
        index = end + 1
    return found


def runnable(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.runnable]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


# --------------------------------------------------------------------- static checks (fast)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_markers_sit_right_before_a_block_and_give_a_reason(page: Path) -> None:
    lines = page.read_text(encoding="utf-8").splitlines()
    problems = []
    for number, line in enumerate(lines, 1):
        if not (line.strip().startswith("<!--") and "not-run" in line):
            continue
        marker = NOT_RUN.match(line.strip())
        if not marker or not marker["reason"]:
            problems.append(f"{number}: write the marker as <!-- not-run: REASON -->")
            continue
        following = next((text for text in lines[number:] if text.strip()), "")
        if not FENCE.match(following):
            problems.append(f"{number}: the marker is not followed by a code block")
    assert not problems, f"{page_id(page)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_commands_are_in_blocks_that_run(page: Path) -> None:
    """A command shown in an output block would escape this test: it belongs in ``bash``."""
    hidden = [
        f"{block.where}: ```{block.lang or '(no language)'} block shows a command"
        for block in blocks(page)
        if block.lang not in SHELL | PYTHON
        and any(line.lstrip().startswith(COMMAND_WORDS) for line in block.code.splitlines())
    ]
    assert not hidden, "; ".join(hidden)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    missing = []
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        target = match["target"].split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        if not (page.parent / target).exists():
            missing.append(target)
    assert not missing, f"{page_id(page)} links to missing files: {missing}"


TEST_REFERENCE = re.compile(r"\btests/(?P<file>[a-z0-9_]+\.py)(?:::(?P<test>[a-z0-9_]+))?")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_tests_exist(page: Path) -> None:
    """``tests/FILE.py::TEST`` in a page (the guarantees table) names a test that exists."""
    missing = []
    for match in TEST_REFERENCE.finditer(page.read_text(encoding="utf-8")):
        source = REPO / "tests" / match["file"]
        defined = rf"^(async )?def {match['test']}\("
        exists = source.is_file() and (
            not match["test"] or re.search(defined, source.read_text(encoding="utf-8"), re.M)
        )
        if not exists:
            missing.append(match.group(0))
    assert not missing, f"{page_id(page)} names tests that do not exist: {missing}"


def test_readme_has_blocks_that_run() -> None:
    ran = runnable(REPO / "README.md")
    assert len(ran) > 0
    assert any(block.lang in SHELL for block in ran) and any(block.lang in PYTHON for block in ran)
    assert any(block.is_serve for block in ran)


def test_extraction_finds_markers_languages_and_serve_blocks(tmp_path: Path) -> None:
    """The extractor on a page written for it: what runs, what not and why."""
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```bash\nsagemaker-reranker serve \\\n    --model-data model.tar.gz\n```\n\n"
        "<!-- not-run: needs AWS -->\n\n```bash\nsagemaker-reranker list\n```\n\n"
        "- item\n\n  ```python\n  print(1)\n  ```\n\n```text\noutput\n```\n",
        encoding="utf-8",
    )
    found = blocks(page)
    assert [(block.lang, block.not_run) for block in found] == [
        ("bash", None),
        ("bash", "needs AWS"),
        ("python", None),
        ("text", None),
    ]
    assert found[0].is_serve and found[0].command == (
        "sagemaker-reranker serve --model-data model.tar.gz"
    )
    assert found[2].code == "print(1)"
    assert [block.runnable for block in found] == [True, False, True, False]


# --------------------------------------------------------------------- running the blocks


@pytest.fixture(scope="module")
def moto_url():
    from aws_fixtures import MotoOptions, serve_moto

    with pytest.MonkeyPatch.context() as monkeypatch, serve_moto(monkeypatch, MotoOptions()) as url:
        yield url


def block_env(home: Path, moto_url: str) -> dict[str, str]:
    """A user's shell: this venv first on PATH, fake AWS on moto, no hub, no AWS config."""
    from aws_fixtures import cli_env

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    tiers = {
        key: os.environ[key] for key in ("RERANKER_MMS_VENV", "PIP_CONSTRAINT") if key in os.environ
    }
    return cli_env(home, moto_url, SECRET, PATH=path, **tiers)


class Servers:
    """The page's background ``serve`` commands, one per port, as in terminals of their own.

    A ``serve`` on a port one of them holds stops that one first (Ctrl-C, then the new one).
    """

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.running: dict[int, tuple[subprocess.Popen, Path]] = {}

    def start(self, command: str, default_port: int, where: str) -> None:
        if not re.search(r"--port \d", command):
            command += f" --port {default_port}"
        port = int(re.search(r"--port (\d+)", command).group(1))
        self.stop(port)
        log_path = self.cwd.parent / f"serve-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[port] = (process, log_path)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                del self.running[port]
                raise AssertionError(f"{where}: `{command}` exited {process.returncode}: {output}")
            if ready(port):
                return
            time.sleep(0.5)
        self.stop(port)
        raise AssertionError(f"{where}: `{command}` not ready in {SERVER_START_TIMEOUT} s")

    def stop(self, port: int) -> None:
        from sagemaker_reranker.deploy.local.net import port_open

        if port not in self.running:
            return
        process, _ = self.running.pop(port)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in its terminal
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"

    def stop_all(self) -> None:
        for port in list(self.running):
            self.stop(port)


def ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200
    except requests.RequestException:
        return False


class Ports:
    """Free ports standing for the port numbers a page shows, the same one for the same number."""

    def __init__(self) -> None:
        self.chosen: dict[str, int] = {}

    def __getitem__(self, shown: str) -> int:
        from sagemaker_reranker.deploy.local.net import free_port

        if shown not in self.chosen:
            self.chosen[shown] = free_port()
        return self.chosen[shown]

    def substitute(self, code: str) -> str:
        return PORT.sub(lambda match: str(self[match.group(0)]), code)


def run_block(block: Block, code: str, cwd: Path, env: dict[str, str]) -> None:
    if block.lang in SHELL:
        argv = ["bash", "-euo", "pipefail", "-c", code]
    else:
        argv = [sys.executable, "-c", code]
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{block.where}: still running after {BLOCK_TIMEOUT} s") from None
    output = done.stdout + done.stderr
    assert SECRET not in output, f"{block.where} printed the secret key"
    assert done.returncode == 0, (
        f"{block.where} exited {done.returncode}:\n{code}\n--- output ---\n{output[-4000:]}"
    )


def prepare_workdir(root: Path, page_blocks: list[Block], tiny_model_dir: Path) -> Path:
    """``my-reranker/`` (the tiny model) and, unless the page packages one, ``model.tar.gz``."""
    from sagemaker_reranker.deploy.packaging.build import package

    cwd = root / "work"
    cwd.mkdir()
    shutil.copytree(tiny_model_dir, cwd / "my-reranker")
    packages_itself = any(
        re.search(r"sagemaker-reranker package\b.*-o model\.tar\.gz", block.command)
        for block in page_blocks
        if block.lang in SHELL
    )
    if not packages_itself:
        package(str(cwd / "my-reranker"), cwd / "model.tar.gz")
    return cwd


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "page", [page for page in PAGES if runnable(page)] or [pytest.param(None)], ids=page_id
)
def test_page_blocks_run_as_written(page, moto_url, tiny_model_dir, tmp_path) -> None:
    if page is None:
        pytest.fail("no page has a block that runs")
    page_blocks = runnable(page)
    cwd = prepare_workdir(tmp_path, page_blocks, tiny_model_dir)
    home = tmp_path / "home"
    home.mkdir()
    env = block_env(home, moto_url)
    ports = Ports()
    # Local mode needs no AWS: its servers run with no AWS variables at all.
    servers = Servers(cwd, {key: value for key, value in env.items() if not key.startswith("AWS_")})
    ran = 0
    try:
        uses_default_port = any(re.search(r"\b8080\b", block.code) for block in page_blocks)
        if uses_default_port and not any(block.is_serve for block in page_blocks):
            implicit = "sagemaker-reranker serve --model-data model.tar.gz"
            servers.start(implicit, ports["8080"], f"{page_id(page)} (implicit serve)")
        for block in page_blocks:
            if block.is_serve:
                servers.start(ports.substitute(block.command), ports["8080"], block.where)
            else:
                run_block(block, ports.substitute(block.code), cwd, env)
            ran += 1
    finally:
        servers.stop_all()
        requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    assert ran == len(page_blocks) > 0
