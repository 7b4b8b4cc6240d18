# Two jobs, each of which sets up .venv first when it is missing or out of date:
#   make demo   trains an encoder-decoder on built-in SCAN (about 5 minutes on 2 CPU cores), prints its test exact
#               match and a few translations, leaves a checkpoint and curves.png in $(DEMO_RUN)
#   make test   runs the test suite
#   make check  ruff check, ruff format --check and mypy (what CI runs before the tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_RUN ?= runs/scan-demo

.PHONY: demo test lint format format-check typecheck check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/transformer-networks demo --out $(DEMO_RUN) --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .

# The formatter's check (`make format` rewrites the files instead).
format-check: $(STAMP)
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

# lint, format and types: what CI runs before the tests
check: lint format-check typecheck

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

# make figures: redraw the pictures of docs/guide.md (docs/images/*.png); trains a small SCAN model in runs/figures-scan
# (about 4 minutes on a CPU)
.PHONY: figures
figures: $(STAMP)
	$(BIN)/python docs/figures.py
