# flows_pipeline: every command a user or CI needs. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home

.PHONY: setup system-packages es-up es-down es-status pg-up pg-down pg-status s3-up s3-down s3-status redis-up redis-down redis-status workers-up workers-down workers-status demo demo-cluster demo-cluster-down test test-unit ui lint bench bench-quick clean-data

# Virtualenv with every dependency pinned (requirements.lock), the project editable.
# Re-runs only when pyproject.toml or the lock file changed.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed system-packages

# Debian packages the tests use: nfdump (nfcapd files; nfpcapd makes them from a pcap), Chromium
# (the UI test; Playwright's own browser download cannot work offline), PostgreSQL (the
# production instance's tests start a cluster of their own with scripts/postgres.sh; Debian's
# package also starts a system cluster on 5432, which nothing here uses) and redis-server (the
# celery broker: scripts/redis.sh; the package's system server on 6379 is not used either). Installed when missing
# and we may (root); otherwise the tests that need them say what is missing.
DEBIAN_PACKAGES := nfdump chromium postgresql redis-server
system-packages:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null); \
	elif [ -n "$$missing" ]; then echo "missing Debian packages (install as root): $$missing"; fi

es-up:
	scripts/es.sh up

es-down:
	scripts/es.sh stop

es-status:
	scripts/es.sh status

# PostgreSQL for a Dagster instance on deploy/dagster.yaml: its own cluster in .pg/ on PG_PORT (5433)
pg-up:
	scripts/postgres.sh up

pg-down:
	scripts/postgres.sh stop

pg-status:
	scripts/postgres.sh status

# S3-compatible storage for the tables (FLOWS_STORAGE_ROOT=s3://...): s3proxy in .s3/ on S3_PORT (9300);
# eval "$$(scripts/s3proxy.sh env)" points a run at it
s3-up:
	scripts/s3proxy.sh up

s3-down:
	scripts/s3proxy.sh stop

s3-status:
	scripts/s3proxy.sh status

# The celery broker (redis-server) in .redis/ on REDIS_PORT (6380); eval "$$(scripts/redis.sh env)" sets
# FLOWS_CELERY_BROKER_URL for workers and runs
redis-up:
	scripts/redis.sh up

redis-down:
	scripts/redis.sh stop

redis-status:
	scripts/redis.sh status

# WORKERS (2) celery workers in .workers/wN, with this shell's environment (README, "Several workers")
workers-up: setup
	scripts/workers.sh up

workers-down:
	scripts/workers.sh stop

workers-status:
	scripts/workers.sh status

# The same hours as `make demo`, on PostgreSQL, S3 (s3proxy), redis and two celery workers
demo-cluster: setup es-up
	scripts/demo_cluster.sh $(HOURS)

demo-cluster-down:
	scripts/demo_cluster.sh down

# The three most recent closed hours (or HOURS="2021-10-28-00:00 2021-10-28-01:00"), then what landed.
demo: setup es-up
	$(BIN)/python scripts/demo.py $(HOURS)

test: setup es-up
	$(BIN)/pytest -q

# every test that needs no Elasticsearch node (the `elasticsearch` marker is set in conftest.py)
test-unit: setup
	$(BIN)/pytest -q -m "not elasticsearch"

ui: setup es-up
	$(BIN)/python scripts/ui.py -w workspace.yaml $(UI_ARGS)

lint: setup
	$(BIN)/ruff check flows_pipeline flows_pipeline_tests scripts bench
	$(BIN)/ruff format --check flows_pipeline flows_pipeline_tests scripts bench

clean-data:
	rm -rf .flows_data

# Benchmark of issue 3 (bench/RESULTS.md): its own Elasticsearch node on port 9250 (bench/work/es),
# every method side by side. matplotlib goes into .venv (constrained to the lock: no pin moves);
# dagster-elasticsearch gets a venv of its own in bench/work/.
BENCH_DES_VENV := bench/work/venv-dagster-es

$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(BIN)/pip install -q -c requirements.lock -r bench/requirements.txt
	touch $@

$(BENCH_DES_VENV)/.installed: bench/requirements-dagster-es.txt requirements.lock
	test -x $(BENCH_DES_VENV)/bin/python || $(BIN)/python -m venv $(BENCH_DES_VENV)
	$(BENCH_DES_VENV)/bin/pip install -q -c requirements.lock -r bench/requirements-dagster-es.txt
	touch $@

bench-setup: $(VENV)/.bench-installed $(BENCH_DES_VENV)/.installed

# 200,000, 1,000,000 and 7,850,484 rows: hours of machine time (see bench/RESULTS.md).
bench: bench-setup
	$(BIN)/python bench/run.py --rows 200000,1000000,7850484 --nfcapd-flows 1000000

bench-quick: bench-setup
	$(BIN)/python bench/run.py --rows 200000
