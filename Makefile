# Everything a fresh machine needs: `make demo` and `make test` create .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RECO   := $(BIN)/reco
CONFIG ?= configs/default.yaml
STAMP  := $(VENV)/.installed
# Charts go into the workdirs of configs/default.yaml and configs/open_bandit.yaml.
CHARTS    ?= .reco/charts
OB_CHARTS ?= .reco/open_bandit/charts

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(RECO) ingest -c $(CONFIG)
	$(RECO) train -c $(CONFIG)
	$(RECO) inspect -c $(CONFIG)
	$(RECO) recommend -c $(CONFIG) --user 12583 -k 10
	$(RECO) recommend -c $(CONFIG) --user 14911 -k 5
	$(RECO) recommend -c $(CONFIG) --user 17841 -k 3 --format json
	printf '12583\n14911\n13089\n' > $(VENV)/demo-users.txt
	$(RECO) recommend -c $(CONFIG) --users-file $(VENV)/demo-users.txt -k 3 --format csv
	$(RECO) recommend -c $(CONFIG) --user no-such-customer -k 3
	$(RECO) evaluate -c $(CONFIG)
	$(RECO) report retention -c $(CONFIG) --chart $(CHARTS)/retention.png
	$(RECO) report business -c $(CONFIG) --by month --chart $(CHARTS)/revenue_by_month.png
	$(RECO) ingest -c configs/open_bandit.yaml
	$(RECO) report ctr -c configs/open_bandit.yaml --by position --chart $(OB_CHARTS)/ctr_by_position.png
	$(RECO) report ctr -c configs/open_bandit.yaml --by arm --chart $(OB_CHARTS)/ctr_by_arm.png

lint: install
	$(BIN)/ruff check reco_cli tests bench
	$(BIN)/ruff format --check reco_cli tests bench
	$(BIN)/mypy reco_cli

unit: install
	$(BIN)/pytest

test: lint unit

# Benchmarks against the shared data sets (skipped when ../shared/datasets is absent); not in `test`.
bench: install
	$(BIN)/python bench/bench_evaluate.py
	$(BIN)/python bench/bench_serving.py

clean:
	rm -rf $(VENV) .reco .pytest_cache .mypy_cache .ruff_cache build *.egg-info
