# Two commands on a fresh machine: `make run` starts the service, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint check-corpus clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lisguard serve

test: $(STAMP)
	$(BIN)/ruff check lisguard tests
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

check-corpus: $(STAMP)
	$(BIN)/lisguard check ../shared/corpus/fhir-converter-hl7v2/*.hl7

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
