# attnviz: `make demo` sets everything up and draws a heat map; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help install demo test lint bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv and install attnviz with its test tools

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || { $(PYTHON) scripts/check_disk.py $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: install ## draw where the network looks on a bundled photo -> demo/coffee.attn-concat.png
	$(BIN)/attnviz run sample_images/coffee.png --mode concat -o demo/coffee.attn-concat.png --overwrite

# Two pytest-xdist workers: the suite's giants (tests/test_sweep.py's GIANTS) and its Ray tests each keep to one.
WORKERS ?= 2

test: install ## lint, type-check and run the whole test suite (WORKERS=2 pytest-xdist workers)
	$(BIN)/ruff check attnviz tests scripts
	$(BIN)/mypy attnviz tests scripts
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup

lint: install ## ruff and mypy
	$(BIN)/ruff check attnviz tests scripts
	$(BIN)/ruff format --check attnviz tests scripts
	$(BIN)/mypy attnviz tests scripts

bench: install ## throughput: attnviz vs the pytorch-grad-cam way vs the runtime limit; time per stage
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/stages.py
	$(BIN)/python scripts/bench_api.py

clean: ## remove the environment and outputs
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
