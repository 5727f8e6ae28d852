# `make` alone prints the targets. Every target but help creates .venv when it is missing
# (python3 -m venv, then torch, then this package with all its extras); later runs skip
# what is already installed.
PYTHON ?= python3
TORCH  ?= torch==2.13.0
ARGS   ?=
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help report test bench lint readme clean-venv

define HELP
manual-bp: explicit backprop in NumPy, a gradient oracle for torch models, a gradient-flow lab

  make report       run every experiment and write reports/ (the main job; a few minutes)
  make test         the test suite: pytest + hypothesis against torch.autograd, on every
                    core (-n auto), with the derandomised `ci` hypothesis profile
                    ARGS="..." is passed on to pytest: make test ARGS="tests/test_cli.py -x"
  make bench        the speed benchmark alone (experiments.benchmark, writes reports/benchmark/)
                    ARGS="..." is passed on to it: make bench ARGS="--help"
  make lint         ruff check and ruff format --check over the repository
  make readme       rewrite README.md's printed outputs from what the code prints now, and
                    docs/ops.md from the op registry (review with git diff README.md docs/;
                    the test suite fails while they differ)
  make clean-venv   delete .venv

Every target but help and clean-venv first creates .venv when it is missing: python3 -m venv
(PYTHON=... picks the interpreter), then $(TORCH) (TORCH=... picks another build; an
unpinned torch may pull gigabytes of CUDA libraries), then pip install -e ".[dev]": the
package with its extras lab, hypothesis and cluster, and pytest, pytest-xdist and ruff.
endef
export HELP

help:
	@echo "$$HELP"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

report: $(STAMP)
	$(PY) -m experiments.worked_example
	$(PY) -m experiments.worked_example_rnn
	$(PY) -m experiments.gradient_flow
	$(PY) -m experiments.training
	$(PY) -m experiments.rnn_gradient_flow
	$(PY) -m experiments.jacobian_spectrum
	$(PY) -m experiments.isometry_training
	$(PY) -m experiments.depth_scales
	$(PY) -m experiments.finite_width
	$(PY) -m experiments.benchmark

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n auto --dist loadgroup -q $(ARGS)

bench: $(STAMP)
	$(PY) -m experiments.benchmark $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

readme: $(STAMP)
	PYTHONPATH=. $(PY) tests/test_readme.py --update

clean-venv:
	rm -rf $(VENV)
