# Two entry points for a fresh machine with Python 3.11:
#   make demo   set up .venv, generate demo data, train a model tracked in MLflow (sqlite), score customers
#               and choose who to contact within a budget
#   make test   set up .venv with the dev extras at the versions pinned in constraints.txt and run the test suite
# For maintainers:
#   make lock         re-resolve constraints.txt from pyproject.toml with the releases of today; commit the change
#   make test-floors  install the lowest versions pyproject.toml allows (released before the lock) into
#                     .venv-floors and run the fast tests and the slow ones marked `floors` (the server's, the
#                     MLflow model's, the Dask engine's)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := dev,serve,dask,db
DEMO_DIR ?= demo_data
DEMO_CUSTOMERS ?= 5000
UV_VERSION ?= 0.13.9
UV := .venv-uv/bin/uv
FLOORS := .venv-floors
# the lock's cut-off date, from the command recorded in its header
LOCK_DATE = $(shell sed -n 's/.*--exclude-newer \([^ ]*\).*/\1/p' constraints.txt)

.PHONY: demo test lint lock test-floors clean

# uv installs the pinned environment in seconds (pip took 3-4 minutes); it is itself installed by pip
$(UV):
	$(PYTHON) -m venv .venv-uv
	.venv-uv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(BIN)/python: | $(UV)
	$(UV) venv --quiet --seed --python $(PYTHON) $(VENV)

# bytecode compiled at install, as pip does (uv does not by default): where .pyc files cannot be written later
# (PYTHONDONTWRITEBYTECODE, a read-only install), every command would compile its imports again, 1-2.5 s of CPU
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(UV) pip install --quiet --python $(BIN)/python --compile-bytecode -c constraints.txt -e ".[$(EXTRAS)]"
	$(BIN)/python -m compileall -q src
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
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: $(VENV)/.installed
	$(BIN)/ruff check .

lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --extra dev --extra serve --extra dask --extra db --universal \
		--python-version 3.11 --upgrade --exclude-newer "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" -o constraints.txt

test-floors: | $(UV)
	rm -rf $(FLOORS)
	$(UV) venv --quiet --python $(PYTHON) $(FLOORS)
	$(UV) pip install --quiet --python $(FLOORS)/bin/python --resolution lowest-direct --compile-bytecode \
		--exclude-newer "$(LOCK_DATE)" -e ".[$(EXTRAS)]"
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile -m "not slow or floors"  # one session: the shared models are trained once

clean:
	rm -rf $(VENV) .venv-uv $(FLOORS) $(DEMO_DIR) mlflow.db mlartifacts
