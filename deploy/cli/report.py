"""How the command line shows what the control plane does: notices, dry-run calls, waits, uploads.

Everything goes to stderr, so stdout stays parseable (``--json``). Every text passes
``redaction.shown``: it may quote AWS (a status reason, a resource name) or a file's name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from sagemaker_reranker.deploy.aws.session import PlannedCall, Reporter
from sagemaker_reranker.deploy.redaction import shown


class StatusLine:
    """A live ``name: status (elapsed)`` line: redrawn on a terminal, else one line per change."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""
        self.last_status = ""

    def show(self, status: str, elapsed: float) -> None:
        line = f"{self.label}: {status} ({elapsed:.0f}s)"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
        elif status != self.last_status:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last, self.last_status = line, status

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


class TerminalReporter(Reporter):
    """The CLI's reporter; ``quiet`` (``--json``) keeps only what a failure needs."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._line: StatusLine | None = None

    def note(self, message: str) -> None:
        click.echo(shown(message), err=True)

    def planned(self, call: PlannedCall) -> None:
        if not self.quiet:
            click.echo(shown(f"[dry-run] would call {call.describe()}"))

    def status(self, label: str, status: str, elapsed: float) -> None:
        label, status = shown(label), shown(status)
        if self._line is None or self._line.label != label:
            self.status_done()
            self._line = StatusLine(label)
        self._line.show(status, elapsed)

    def status_done(self) -> None:
        if self._line is not None:
            self._line.close()
            self._line = None

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        with click.progressbar(length=total, label=shown(label), file=sys.stderr) as bar:
            yield bar.update
