# Every install goes through constraints.txt (torch==2.13.0, the CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= BAAI/bge-reranker-base
ARCHIVE ?= model.tar.gz
ENDPOINT ?=
EVAL_OUT ?= .work/eval
ROLE ?= $(SAGEMAKER_ROLE)
# The model-server tier's own virtualenv, built on demand, installs through the same pins.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export RERANKER_MMS_VENV ?= $(CURDIR)/.venv-mms

.PHONY: install test demo eval lint package deploy bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,sdk]'
	touch $(STAMP)

test: install  ## ruff, then the whole suite (slow tiers included, as in CI)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

demo: install  ## package the model, serve it locally, rerank the example query through LangChain
	$(BIN)/python -m sagemaker_reranker.examples.demo --model $(MODEL)

eval: install  ## rerank the labelled State of the Union set with MODEL: quality, latency, plot in EVAL_OUT
	rm -rf $(EVAL_OUT)
	$(BIN)/python -m sagemaker_reranker.examples.sotu_eval --model $(MODEL) --out $(EVAL_OUT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

package: install
	$(BIN)/sagemaker-reranker package --model $(MODEL) -o $(ARCHIVE) --force

deploy: package  ## make deploy ENDPOINT=my-reranker ROLE=arn:aws:iam::123456789012:role/SageMakerRole
	@test -n "$(ENDPOINT)" || { echo "ENDPOINT=<endpoint name> is required"; exit 2; }
	@test -n "$(ROLE)" || { echo "ROLE=<execution role ARN> (or SAGEMAKER_ROLE) is required"; exit 2; }
	$(BIN)/sagemaker-reranker deploy $(ENDPOINT) --model-data $(ARCHIVE) --role $(ROLE)

bench: install
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench.run

gpu-check:  ## on a CUDA machine: handler tests in fp16 + a short fp16 bench (its CPU path elsewhere)
	$(PYTHON) bench/gpu_check.py

clean:
	rm -rf $(VENV) .venv-mms .pytest_cache .ruff_cache $(ARCHIVE)
