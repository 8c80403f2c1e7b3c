VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The local broker by default; `AMQP_URL= make test` lets testcontainers start one.
AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672//
export AMQP_URL

.PHONY: venv test lint demo bench schemas secrets clean promtool

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# promtool for tests/monitoring, unpacked (not installed: no root, no daemon) from Debian's
# prometheus package; best effort: without apt the tests skip there (and fail under CI).
PROMTOOL := .cache/promtool/usr/bin/promtool
$(PROMTOOL):
	@mkdir -p .cache/promtool && cd .cache/promtool && rm -f prometheus_*.deb && \
	  { apt-get download prometheus >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } && \
	  dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb || \
	  echo "make: could not unpack promtool from Debian's prometheus package" >&2

promtool: $(PROMTOOL)

test: $(STAMP) $(PROMTOOL)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check services schemas tests bench
	$(VENV)/bin/ruff format --check services schemas tests bench
	$(VENV)/bin/mypy services schemas

demo: $(STAMP)
	$(VENV)/bin/premium-support demo

# BENCH_ARGS as the script takes them, e.g. BENCH_ARGS="--processes 1 2 4" or "--clocks 50000".
bench: bench-intake
bench-intake: $(STAMP) ; $(PY) bench/intake_throughput.py $(BENCH_ARGS)
bench-sla: $(STAMP) ; $(PY) bench/sla_timer_scale.py $(BENCH_ARGS)
bench-e2e: $(STAMP) ; $(PY) bench/e2e_latency.py $(BENCH_ARGS)

schemas: $(STAMP)
	$(VENV)/bin/premium-support schemas export

# The compose stack's passwords, their RabbitMQ hashes and URLs (deploy/README.md).
secrets:
	python3 deploy/make_secrets.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
