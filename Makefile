# One-command set-up: `make quickstart` (install + train/evaluate SASRec on ml-100k), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real data: $LLMKT_DATA if set, else ../shared/data next to the clone (never copied into the repo).
LLMKT_DATA ?= $(abspath ../shared/data)
export LLMKT_DATA
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install quickstart test benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU wheel pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

quickstart: install
	$(BIN)/llmkt train configs/sasrec_ml100k.yaml

test: install
	$(BIN)/python -m pytest -q

benchmark: install
	bash benchmarks/run_sasrec_comparison.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
