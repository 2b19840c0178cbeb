"""The handler's modules, imported as the serving container imports them.

The toolkit puts ``code/`` (the packaged handler's folder) on ``sys.path`` and runs
``import inference``; the engine modules beside it import each other flatly. Tests do the
same (``import_handler``), from the folder the packaging step ships, so they test the very
files of the archive::

    from handler import inference, reranker_engine
"""

from __future__ import annotations

from sagemaker_reranker.deploy.packaging.build import import_handler

inference = import_handler("inference")
reranker_contract = import_handler("reranker_contract")
reranker_decoder = import_handler("reranker_decoder")
reranker_encoder = import_handler("reranker_encoder")
reranker_engine = import_handler("reranker_engine")
reranker_loading = import_handler("reranker_loading")
reranker_packed_decoder = import_handler("reranker_packed_decoder")
reranker_request = import_handler("reranker_request")
reranker_rerank_api = import_handler("reranker_rerank_api")
reranker_settings = import_handler("reranker_settings")
