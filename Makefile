# The two commands a new user runs: `make report` (the main job) and `make test`.
# Each creates .venv when missing; re-running skips what is already installed.
PYTHON ?= python3
TORCH  ?= torch==2.13.0
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: report test bench lint clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,cluster]"
	touch $(STAMP)

report: $(STAMP)
	$(PY) -m experiments.worked_example
	$(PY) -m experiments.worked_example_rnn
	$(PY) -m experiments.gradient_flow
	$(PY) -m experiments.training
	$(PY) -m experiments.rnn_gradient_flow
	$(PY) -m experiments.benchmark

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n auto -q

bench: $(STAMP)
	$(PY) -m experiments.benchmark

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf $(VENV)
