# Quick start:  `make demo` (set up .venv, run the main job)  ·  `make test` (set up, run tests)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean mtl-demo transfer-demo evaluate-demo replay-demo lopt-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=HPARAM_LIST index=quickstart

mtl-demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=MTL index=mtl_quickstart

transfer-demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=TRANSFER index=transfer_quickstart

evaluate-demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=EVALUATE index=evaluate_quickstart

replay-demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=REPLAY index=replay_quickstart

lopt-demo: $(STAMP)
	$(VENV)/bin/tasklab pipeline=META_TRAIN index=lopt_quickstart

test: $(STAMP)
	$(PY) -m pytest -q tests

# the edit-test loop: unit, contract and reference tests without the slow ones (tests/conftest.py)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not (integration or benchmark or slow)" tests

bench: $(STAMP)
	$(PY) benchmarks/bench_population.py --device cpu
	$(PY) benchmarks/bench_greedy.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_evaluate.py
	$(PY) benchmarks/bench_meta.py

clean:
	rm -rf $(VENV) outputs multirun
