# One command sets up and runs each thing a user or CI needs; `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint format chat telegram db-upgrade train-default bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with torch==2.13.0 (CPU) and the project + dev tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

chat: install db-upgrade ## set everything up and chat in the console with the shipped model
	$(BIN)/chatbot chat

telegram: install db-upgrade ## run the Telegram bot (needs CHATBOT_TELEGRAM_TOKEN, e.g. in .env)
	$(BIN)/chatbot telegram

db-upgrade: install ## create or migrate the local database (SQLite in data/ by default)
	$(BIN)/chatbot db upgrade >/dev/null

# Test worker processes (pytest-xdist); TEST_WORKERS=0 runs the tests in this one process.
TEST_WORKERS ?= 2

test: install ## run the whole test suite (SQLite + PostgreSQL, fake Telegram API, tiny models)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test-fast: install ## the tests not marked slow: under a minute, for every change
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow"

lint: install ## ruff lint + format check + mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The recipe of models/default and models/default-reverse (see models/default/README.md): fixed
# step counts, the learning rate decaying linearly to zero over them. The forward model trains in
# two stages: the second starts from the first's weights with a fresh schedule (warmup, then
# decay to zero again). The first stage and the reverse model came from this recipe on a GPU,
# the second stage on 2 CPU cores; the model card states the time each takes on 2 CPU cores.
DEFAULT_RECIPE := --data chitchat --context-turns 2 --max-length 40 --warmup-steps 500 \
	--validate-every 1000 --average-last 3 --fp16-weights
DEFAULT_STAGE1 := build/default-stage1
train-default: install ## retrain models/default and its MMI reverse model (2 CPU cores: see models/default/README.md)
	CHATBOT_TRAINING__EARLY_STOPPING_PATIENCE=1000 $(BIN)/chatbot train $(DEFAULT_RECIPE) \
		--out $(DEFAULT_STAGE1) --hidden-size 384 --embedding-dim 384 --max-steps 7288
	CHATBOT_TRAINING__EARLY_STOPPING_PATIENCE=1000 $(BIN)/chatbot train --data chitchat \
		--init-from $(DEFAULT_STAGE1) --out models/default --max-steps 7000 --warmup-steps 300 \
		--lr 5e-4 --validate-every 1000 --average-last 3 --fp16-weights
	CHATBOT_TRAINING__EARLY_STOPPING_PATIENCE=1000 $(BIN)/chatbot train $(DEFAULT_RECIPE) \
		--reverse --out models/default-reverse --max-steps 7393
	$(BIN)/chatbot eval models/default --split test --greedy --record
	$(BIN)/chatbot eval models/default --split test --limit 500 --greedy --record

bench: install ## measure speed targets; prints ratios, writes bench/results/*.json
	$(BIN)/python -m bench

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
