# funnelrank developer entry points. On a fresh machine:
#   make demo   -> installs everything, then runs the main job on the embedded default
#   make test   -> installs everything, then runs the C++ and Python test suites
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ASAN_VENV := .venv-asan
# Warnings are errors in every build this Makefile makes (CI included).
CMAKE_FLAGS := -C cmake.define.FUNNELRANK_WERROR=ON
PYTEST_ARGS ?=

.PHONY: setup build demo test test-cpp test-py test-sanitize bench tune-fusion clean wheel-smoke docs typecheck stubs

$(BIN)/python:
	./tools/install-sysdeps.sh
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23" "scikit-build-core>=0.10" "pybind11>=2.12"

# (Re)build the native core and install the package in editable mode; incremental via build/. Then export
# the default bi-encoder's fp32 ONNX into the cache (offline; skipped when it already exists).
build: $(BIN)/python
	$(BIN)/python -m pip install -q --no-build-isolation $(CMAKE_FLAGS) -e ".[test,dev,serve]"
	HF_HUB_OFFLINE=1 $(BIN)/python -m funnelrank.models.export_embedder

setup: build

demo: build
	$(BIN)/funnelrank demo

test-cpp: $(BIN)/python
	cmake -S . -B build/cpp-tests -G Ninja -DFUNNELRANK_BUILD_PYTHON=OFF -DFUNNELRANK_BUILD_TESTS=ON -DFUNNELRANK_WERROR=ON
	cmake --build build/cpp-tests
	ctest --test-dir build/cpp-tests --output-on-failure

test-py: build
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: test-cpp test-py

# The C++ tests and the core's Python tests, built with AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: $(BIN)/python
	cmake -S . -B build/cpp-asan -G Ninja -DFUNNELRANK_BUILD_PYTHON=OFF -DFUNNELRANK_BUILD_TESTS=ON \
	  -DFUNNELRANK_WERROR=ON -DFUNNELRANK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build/cpp-asan
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build/cpp-asan --output-on-failure
	test -x $(ASAN_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(ASAN_VENV)
	$(ASAN_VENV)/bin/python -m pip install -q --upgrade "scikit-build-core>=0.10" "pybind11>=2.12"
	$(ASAN_VENV)/bin/python -m pip install -q --no-build-isolation $(CMAKE_FLAGS) \
	  -C cmake.define.FUNNELRANK_SANITIZE=ON -C cmake.build-type=Debug -C build-dir=build/asan-py ".[test,dev,serve]"
	LD_PRELOAD="$$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ASAN_VENV)/bin/python -m pytest -m core -p no:cacheprovider $(PYTEST_ARGS)

# Build the wheel as `pip wheel .` does, repair it to manylinux (auditwheel), install it into a fresh venv
# (no system site-packages) and run `funnelrank demo` + the quick start from it with no compiler on PATH,
# offline (tools/wheel-smoke.sh; everything under build/wheel-smoke/).
wheel-smoke: $(BIN)/python
	./tools/wheel-smoke.sh $(BIN)/python

# The native core's type stubs, python/funnelrank/_core.pyi, generated from the built module with pybind11-stubgen
# (tools/core_stubs.py). tests/test_core_stubs.py (in `make test`) fails when the committed file is stale.
stubs: build
	$(BIN)/python tools/core_stubs.py

# mypy over python/funnelrank: strict on the public modules, plain on the rest ([tool.mypy] in pyproject.toml).
typecheck: build
	$(BIN)/python -m mypy

# The documentation site (mkdocs.yml, docs/; the guides are README sections) into build/site, warnings as
# errors. Installs the docs extra's packages only: the API reference is read from the sources.
docs: $(BIN)/python
	mkdir -p build
	$(BIN)/python tools/extra-requirements.py docs > build/docs-requirements.txt
	$(BIN)/python -m pip install -q -r build/docs-requirements.txt
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

bench: build
	$(BIN)/python bench/run_all.py

# Choose the rerank fusion (funnelrank.rerank.policy.DEFAULT_FUSION, DEFAULT_STAGE1_WEIGHT) on VALIDATION queries:
# the scifact train queries held out from reranker training, the default reranker over the hybrid top-100
# (traces once, then every fusion method x weight scored from them; 10-30 min on the 2-core box). Prints the sweep.
DATA ?= ../shared/data
FUSION_DIR ?= build/tune-fusion
tune-fusion: build
	mkdir -p $(FUSION_DIR)
	$(BIN)/python -m funnelrank.train heldout-ids scifact --data $(DATA) > $(FUSION_DIR)/scifact-heldout.txt
	rm -f $(FUSION_DIR)/traces.jsonl
	nice -n 10 $(BIN)/funnelrank eval $(DATA)/scifact --split train --query-ids $(FUSION_DIR)/scifact-heldout.txt \
	  --stages hybrid,rerank --rerank-from hybrid --rerank-traces $(FUSION_DIR)/traces.jsonl --json \
	  > $(FUSION_DIR)/eval.json
	$(BIN)/funnelrank tune-fusion $(FUSION_DIR)/traces.jsonl --qrels $(DATA)/scifact/qrels/train.tsv \
	  > $(FUSION_DIR)/sweep.txt
	cat $(FUSION_DIR)/sweep.txt

clean:
	rm -rf build $(VENV) $(ASAN_VENV)
