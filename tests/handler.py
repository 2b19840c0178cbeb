"""The handler's modules, imported as the serving container imports them.

The toolkit puts ``code/`` (the packaged handler's folder) on ``sys.path`` and runs
``import inference``; the engine modules beside it import each other flatly. Tests do the
same, from the folder the packaging step ships, so they test the very files of the archive::

    from handler import inference, reranker_batching
"""

from __future__ import annotations

import importlib
import sys

from sagemaker_reranker.deploy.packaging.build import handler_dir

CODE_DIR = str(handler_dir())
if CODE_DIR not in sys.path:
    sys.path.insert(0, CODE_DIR)
# A repository checkout on sys.path offers its ``inference/`` folder as a namespace package;
# one cached before code/ was on the path would stand in for the module.
if getattr(sys.modules.get("inference"), "__file__", "") is None:
    del sys.modules["inference"]

inference = importlib.import_module("inference")
reranker_batching = importlib.import_module("reranker_batching")
reranker_decoder = importlib.import_module("reranker_decoder")
reranker_encoder = importlib.import_module("reranker_encoder")
reranker_kinds = importlib.import_module("reranker_kinds")
reranker_loading = importlib.import_module("reranker_loading")
reranker_prompt = importlib.import_module("reranker_prompt")
reranker_request = importlib.import_module("reranker_request")
reranker_scoring = importlib.import_module("reranker_scoring")
reranker_settings = importlib.import_module("reranker_settings")
