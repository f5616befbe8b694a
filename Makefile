# Two commands on a fresh machine: `make run` starts the service, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint check-corpus clean fuzz bench bench-profile

# constraints.txt: the exact versions, the same on every machine and in the image
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lisguard serve

test: $(STAMP)
	$(BIN)/ruff check lisguard tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# Longer fuzzing on demand: many more hypothesis examples and corpus mutations, then atheris
# (coverage-guided) on the reader and framer. FUZZ_RUNS bounds the atheris run.
FUZZ_EXAMPLES ?= 20000
FUZZ_ROUNDS ?= 25
FUZZ_RUNS ?= 200000
fuzz: $(STAMP)
	LISGUARD_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LISGUARD_FUZZ_ROUNDS=$(FUZZ_ROUNDS) \
	  $(BIN)/pytest -p no:cacheprovider tests/fuzz
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,fuzz]'
	$(BIN)/python tests/fuzz/atheris_hl7.py -runs=$(FUZZ_RUNS) -max_len=65536

# lisguard (SQLite and PostgreSQL) against python-hl7, durable peers, a raw fixed-ACK server and an
# hl7apy pipeline, on a mixed and a relevant feed, in one run (a few minutes): prints the table,
# writes benchmarks/results/*.json. BENCH_FULL=1: 1M stored messages; BENCH_PG=0: no PostgreSQL.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.validate_memory  # validate's peak RSS at 100k/300k/1M messages

# A flame graph of `lisguard serve` under the benchmark feed (py-spy, installed here only).
bench-profile: $(STAMP)
	$(BIN)/pip install --quiet py-spy
	$(BIN)/python -m benchmarks.profile 8 15 benchmarks/results/profile.svg

check-corpus: $(STAMP)
	$(BIN)/lisguard check ../shared/corpus/fhir-converter-hl7v2/*.hl7

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
