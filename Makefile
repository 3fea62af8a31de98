# cnnlab: `make train` runs the main job, `make test` the whole suite, `make docs` the site. They install into
# .venv first (torch 2.14.1 / torchvision 0.29.1 are pinned in pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnnlab-installed
DOCS_STAMP := $(VENV)/.cnnlab-docs-installed

.PHONY: install train test docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(BIN)/cnnlab train $(ARGS)

# two pytest-xdist workers, one torch thread each (tests/conftest.py); PYTEST_WORKERS=0 runs in one process.
# worksteal: a worker that runs out of tests takes half of the other's queue, so a few long tests at the end
# do not leave a core idle
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# the documentation site into site/ (open site/index.html from disk): MkDocs + Material, offline, --strict (a broken
# link or reference fails); the API pages from the docstrings, the notebooks executed in quick mode
$(DOCS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	CNNLAB_NOTEBOOK_QUICK=1 NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --clean

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
