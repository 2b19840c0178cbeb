"""The two ways an evaluation stops: the user's input is wrong, or scoring failed."""

from __future__ import annotations


class EvalInputError(Exception):
    """Bad input (a file, a format, an option): one line naming it; the CLI exits with 2.

    Raised before anything is scored or written.
    """


class EvalRunError(Exception):
    """Scoring could not finish (endpoint error, model that failed to load): exit code 1.

    Per-query results already saved under ``--out`` stay there, so a rerun resumes.
    """
