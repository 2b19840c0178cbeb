"""``sagemaker-reranker eval``: how good, how fast and how costly a reranker is on labelled data.

By concern: ``data`` (BEIR corpus, queries and qrels, streamed), ``runs`` (TREC run files and
the one ranking rule), ``first_stage`` (BM25 candidates), ``systems`` (where scores come from:
an endpoint, a runtime URL, or an archive served locally for the run), ``scoring`` (queries in
parallel through the production client, timed as the client sees them), ``store`` (per-query
results on disk, so an interrupted run resumes), ``metrics`` (ir-measures), ``report`` and
``plot`` (table, JSON, Markdown, PNG), ``runner`` (all of it in order). No click, no printing:
the command line (``deploy/cli/eval.py``) shows what ``runner`` reports.
"""
