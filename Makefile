# cnnlab: `make train` runs the main job, `make test` the whole suite. Both install into
# .venv first (torch 2.14.1 / torchvision 0.29.1 are pinned in pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnnlab-installed

.PHONY: install train test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/cnnlab train $(ARGS)

# two pytest-xdist workers, one torch thread each (tests/conftest.py); PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
