# Two commands for a newcomer: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck clean bench sysdeps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py $(wildcard src/sedma/compute/crossbar/_xbar*.[ch]) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,ray,quic]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sedma demo

# The NAT tests need iptables, iproute2 and coturn, the dashboard's browser test chromium and
# chromium-driver; as root we install them (Debian), as anyone else those tests skip with one
# line saying why.
sysdeps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  command -v iptables >/dev/null || missing="$$missing iptables"; \
	  command -v turnserver >/dev/null || missing="$$missing coturn"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	fi

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy src/sedma

bench: $(STAMP)
	$(BIN)/sedma bench partition --json results/bench_partition.json
	$(BIN)/sedma bench memory --json results/bench_memory.json

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
