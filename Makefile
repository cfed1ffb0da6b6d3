# clickguard: `make run` starts the proxy, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# python3.12 may sit behind pyenv without being the global version.
PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3; do \
	$$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
SHARED := ../shared/data/feeds
LISTEN ?= 127.0.0.1:8080

.PHONY: run test lint bench fuzz soak venv clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || { test -n "$(PYTHON)" || { echo 'Python >= 3.12 not found' >&2; exit 1; }; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/clickguard run --listen $(LISTEN) --policy policies/default.yaml

test: $(VENV)/.installed
	@# The precision corpus (tests/test_precision.py): Debian's Python documentation.
	@test -d /usr/share/doc/python3/html || { apt-get update -qq && apt-get install -y -qq python3-doc; }
	@# The real-browser tests (tests/test_browser.py): Debian's Chromium and NSS's certutil.
	@command -v chromium >/dev/null && command -v certutil >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium libnss3-tools; }
	@# The audit durability test (tests/test_store.py) traces the writer's system calls.
	@command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace; }
	@# The audit log under Debian's logrotate, create and copytruncate (tests/test_logrotate.py).
	@command -v logrotate >/dev/null || { apt-get update -qq && apt-get install -y -qq logrotate; }
	@# V8 (node) tells which generated scripts are JavaScript (tests/test_differential_js.py).
	@command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs; }
	@# Proxy authentication (tests/test_identity.py): Debian's slapd, slapadd and htpasswd -B.
	@test -x /usr/sbin/slapd && command -v slapadd >/dev/null && command -v htpasswd >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		slapd ldap-utils apache2-utils; }
	@# The PAC file evaluated as a browser would (tests/test_pac.py): pacparser, for Debian's python3.
	@test -d /usr/lib/python3/dist-packages/pacparser || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		python3-pacparser; }
	@# The parent proxy (tests/test_upstream.py): Debian's Squid; openssl hashes its users' passwords.
	@test -x /usr/sbin/squid && command -v openssl >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		squid openssl; }
	@# Workers and nodes sharing state (tests/test_cluster.py, tests/test_workers.py): Debian's redis-server.
	@command -v redis-server >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		redis-server; }
	@# The systemd unit in deploy/ verified and rated by systemd-analyze (tests/test_deploy.py).
	@command -v systemd-analyze >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		systemd; }
	$(VENV)/bin/ruff check clickguard tests bench fuzz
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check clickguard tests bench fuzz
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) bench/run.py
	$(PY) -m bench.hostile
	$(PY) -m bench.device_recognition
	-$(PY) -m bench.differential_js --count 100000
	-$(PY) -m bench.differential_html
	@# Squid alone against Squid asking clickguard squid-helper (1,000,000 entries loaded).
	@test -x /usr/sbin/squid || { apt-get update -qq && apt-get install -y -qq --no-install-recommends squid; }
	$(PY) bench/squid_helper.py
	@# --workers 1 against --workers 2; the workers share state through a private redis-server.
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; }
	$(PY) bench/workers.py

# Not CI: ten minutes at full load through the proxy with a realistic mix; errors, memory growth, audit counts.
soak: $(VENV)/.installed
	$(PY) bench/soak.py --seconds 600

# Not CI: every parser of outside input, a million inputs each (atheris; hours).
fuzz: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[fuzz]'
	$(PY) fuzz/run.py --target all --inputs 1000000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
