# Two entry points for a fresh machine with Python 3.11:
#   make demo   set up .venv, generate demo data, train a model tracked in MLflow (sqlite), score customers
#               and choose who to contact within a budget
#   make test   set up .venv with the dev extras and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_data
DEMO_CUSTOMERS ?= 5000

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,serve,dask]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/churnguard demo-data --out $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed 7
	$(BIN)/churnguard features --transactions $(DEMO_DIR)/transactions.csv --tickets $(DEMO_DIR)/tickets.csv \
		--customers $(DEMO_DIR)/customers.csv --as-of 2025-12-31 --out $(DEMO_DIR)/features.parquet
	$(BIN)/churnguard train --transactions $(DEMO_DIR)/transactions.csv --tickets $(DEMO_DIR)/tickets.csv \
		--customers $(DEMO_DIR)/customers.csv --model-out models/churn_model.zip
	$(BIN)/churnguard score --model models/churn_model.zip --transactions $(DEMO_DIR)/transactions.csv \
		--tickets $(DEMO_DIR)/tickets.csv --customers $(DEMO_DIR)/customers.csv \
		--out $(DEMO_DIR)/scores.csv --budget 5000

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) mlflow.db mlartifacts
