# serlib — reproducible speech emotion recognition report.
#   make book   rebuild the HTML report from the committed executed notebooks (creates .venv if needed)
#   make test   unit tests + notebook smoke runs on a generated mini corpus + book build check
# Everything runs inside .venv, created from pyproject.toml by `make env`.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.serlib-installed
export SERLIB_DATA ?= $(abspath ../shared/data)
export PYTHONHASHSEED := 0

CORPUS     ?= ravdess
PROTOCOL   ?=
SEEDS      ?= 0 1 2
EPOCHS     ?=
RETRAIN    ?=
MODELS     ?=
MANIFEST   ?=
FOLDS      ?=
PAGES_ONLY ?=
SCHEDULER  ?=
BATCH_OPTS  = $(if $(MODELS),--models $(MODELS)) $(if $(PAGES_ONLY),--pages-only) $(if $(SCHEDULER),--scheduler $(SCHEDULER))
CORPORA    := ravdess emodb urdu cremad savee tess iemocap

.PHONY: env test book book-strict lab run runs summary ablations selection cross-corpus multi-corpus benchmark screenshot clean help

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

## environment ---------------------------------------------------------------
env: $(STAMP)

# Re-installs only when pyproject.toml changes; a second `make env` does nothing.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name serlib --display-name "Python (serlib)" >/dev/null
	@touch $@

## tests ---------------------------------------------------------------------
# one worker process per core (pytest-xdist), each test file on one worker, the slow end-to-end file first
TEST_WORKERS ?= auto
test: env
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

## the book ------------------------------------------------------------------
# Builds from the committed executed notebooks: no training, no data, no network.
book: env
	$(PY) -m serlib.report.book build
	@echo "open _build/html/index.html"

screenshot: env
	$(PY) -m serlib.report.book screenshot --html _build/html --out _build/summary.png

lab: env
	$(VENV)/bin/jupyter lab notebooks

## batch runs (papermill) ----------------------------------------------------
# make run CORPUS=ravdess [PROTOCOL=speaker-split] [SEEDS="0 1 2"] [EPOCHS=30]
# make run MANIFEST=my.csv [FOLDS=5] [MODELS="tier1 whisper-mlp"]   a corpus of your own (README, "Your own corpus")
run: env
ifdef MANIFEST
	$(PY) -m serlib.experiments.batch manifest $(MANIFEST) --seeds $(SEEDS) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(FOLDS),--folds $(FOLDS)) $(if $(RETRAIN),--retrain) $(if $(MODELS),--models $(MODELS)) $(if $(PAGES_ONLY),--pages-only)
else
	$(PY) -m serlib.experiments.batch corpus $(CORPUS) $(if $(PROTOCOL),--protocol $(PROTOCOL)) --seeds $(SEEDS) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(RETRAIN),--retrain) $(BATCH_OPTS)
endif

# every corpus whose data is present under $$SERLIB_DATA; a skip line for each absent one
runs: env
	$(PY) -m serlib.experiments.batch all --seeds $(SEEDS) $(if $(RETRAIN),--retrain) $(BATCH_OPTS)

summary: env
	$(PY) -m serlib.experiments.batch summary

ablations: env
	$(PY) -m serlib.experiments.batch ablations --corpus $(CORPUS) $(if $(PAGES_ONLY),--pages-only) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

# Tier-1+: the recipe steps on RAVDESS EmoBox folds 1-2 (validation speakers choose), then its page
selection: env
	$(PY) -m serlib.experiments.batch selection $(if $(PAGES_ONLY),--pages-only) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

cross-corpus: env
	$(PY) -m serlib.experiments.batch cross-corpus $(if $(PAGES_ONLY),--pages-only) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

# the Whisper-base heads trained on several corpora: the recipe's choices on validation speakers, every
# in-corpus protocol, each corpus held out in turn, then the page (PAGES_ONLY=1: the page alone)
multi-corpus: env
ifndef PAGES_ONLY
	$(PY) -m serlib.experiments.multi_corpus selection
	$(PY) -m serlib.experiments.multi_corpus in-corpus --seeds $(SEEDS)
	$(PY) -m serlib.experiments.multi_corpus loco --seeds $(SEEDS)
endif
	$(PY) -m serlib.experiments.multi_corpus page

benchmark: env
	$(PY) benchmarks/prepare_throughput.py
	$(PY) benchmarks/predict_folder.py
	$(PY) benchmarks/train_throughput.py --cremad-scale
	$(PY) benchmarks/cli_startup.py
	$(PY) benchmarks/tier1plus_fold.py
	$(PY) benchmarks/tier1plus_fold.py --threads 1

clean:
	rm -rf _build .pytest_cache
