# slimlab — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# a relative SLIMLAB_CIFAR10 is meant from here, the repository root; the notebooks' kernels run in
# notebooks/, so hand them the absolute path
ifneq ($(SLIMLAB_CIFAR10),)
override SLIMLAB_CIFAR10 := $(abspath $(SLIMLAB_CIFAR10))
export SLIMLAB_CIFAR10
endif
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: run test unit nbtest lab install clean benchmarks

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

install: $(VENV)/.installed

## run the whole course headless (every notebook in order) into build/
run: install
	@mkdir -p build/notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo ">>> $$nb (profile $(PROFILE))"; \
	  SLIMLAB_PROFILE=$(PROFILE) $(PY) -m slimlab.execute "$$nb" --output-dir build/notebooks || exit 1; \
	done
	SLIMLAB_PROFILE=$(PROFILE) $(PY) -m slimlab.report
	SLIMLAB_PROFILE=$(PROFILE) $(PY) browser/build_site.py
	@echo "Executed notebooks: $(CURDIR)/build/notebooks/"
	@echo "Claims report:      $(CURDIR)/build/claims_report.md (and .html)"
	@echo "Static site:        $(CURDIR)/build/site/index.html"

## unit tests + every notebook under nbval, quick profile
test: install
	SLIMLAB_PROFILE=quick $(PY) -m pytest -q tests
	@for nb in $(NOTEBOOKS); do \
	  start=$$(date +%s); \
	  SLIMLAB_PROFILE=quick $(PY) -m pytest -q -p no:cacheprovider $(NBVAL) "$$nb" || exit 1; \
	  echo ">>> $$nb passed nbval in $$(( $$(date +%s) - start )) s"; \
	done

unit: install
	SLIMLAB_PROFILE=quick $(PY) -m pytest -q tests

lab: install
	$(VENV)/bin/jupyter lab notebooks/

## student notebooks in build/student/: solutions replaced by stubs, outputs cleared (docs/teaching.md)
.PHONY: student
student: install
	$(PY) -m slimlab.student --out build/student

benchmarks: install
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf build .pytest_cache

## the course as a static HTML site in build/site/: a landing page with the claims' verdicts and key figures,
## the evidence notebooks (browser/build_site.py's NOTEBOOK_SOURCE, or SITE_NOTEBOOKS=DIR) and the claims report
.PHONY: site test-browser
SITE_NOTEBOOKS ?=
site: install
	SLIMLAB_PROFILE=$(PROFILE) $(PY) -m slimlab.report
	SLIMLAB_PROFILE=$(PROFILE) $(PY) browser/build_site.py $(if $(SITE_NOTEBOOKS),--notebooks $(SITE_NOTEBOOKS))

## the course in a real browser: JupyterLab + Debian's headless chromium via Playwright (not in `make test`)
CHROMIUM ?= /usr/bin/chromium
test-browser: install site
	@test -x $(CHROMIUM) || { echo ">>> installing Debian's chromium"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; }
	@$(PY) -c "import playwright.sync_api" 2>/dev/null || $(PY) -m pip install -q -e '.[browser]'
	@mkdir -p build/browser
	SLIMLAB_PROFILE=quick SLIMLAB_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -p no:cacheprovider -s browser/test_course.py

## one notebook in the full profile, resumable: `make full NB=02_quantization` (log in logs/full-<NB>.log).
## One torch thread, so two runs can share the 2 cores; start a second one only after the first is
## computing (two kernels started in the same instant once hung on a port race here).
## SLIMLAB_DASK=local:N (N single-thread worker processes here) or SLIMLAB_DASK=tcp://host:8786 (a Dask
## scheduler) spreads the notebook's parts over workers: `SLIMLAB_DASK=local:2 make full NB=01_marginal_returns`
## (README, "Running the full profile on a cluster"); unset, the parts run one after another.
## After it: `make evidence NB=...` makes build/full/<NB>.ipynb (progress bars cleaned) the committed
## notebooks/<NB>.ipynb, which then carries the full-profile outputs (slimlab.nb.publish_evidence).
.PHONY: evidence
evidence: install
	@test -n "$(NB)" || { echo "usage: make evidence NB=<notebook stem, e.g. 02_quantization>"; exit 2; }
	$(PY) -m slimlab.nb --publish build/full/$(NB).ipynb

SLIMLAB_DASK ?=
.PHONY: full
full: install
	@test -n "$(NB)" || { echo "usage: make full NB=<notebook stem, e.g. 02_quantization>"; exit 2; }
	@test -f notebooks/$(NB).ipynb || { echo "no notebooks/$(NB).ipynb"; exit 2; }
	@mkdir -p logs build/full
	@echo ">>> $(NB), full profile, parts: $(if $(SLIMLAB_DASK),Dask $(SLIMLAB_DASK),serial)"
	set -o pipefail; SLIMLAB_PROFILE=full SLIMLAB_DASK="$(SLIMLAB_DASK)" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 $(PY) -m slimlab.execute \
	  notebooks/$(NB).ipynb --output-dir build/full 2>&1 | tee logs/full-$(NB).log   # nbconvert --execute, with no unbounded waits
	$(PY) -m slimlab.nb --clean-progress build/full/$(NB).ipynb   # frozen tqdm widgets -> their final line
