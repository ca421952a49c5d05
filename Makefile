# gameproto: `make run` starts a server on the embedded store, `make test` runs the suite.
# Both create .venv and install what they need; nothing else has to be on the machine
# but a Python 3.11+ (and, for `make test` under CI=true, the right to apt-get install).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
ARGS ?=
TESTS ?= tests

.PHONY: run test venv test-deps bench-deps vendor screenshots clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	# Twisted's plugin scan: fails here if twistd would not find gameproto (setup.cfg's
	# package_dir says why it does), and writes twisted/plugins/dropin.cache.
	$(VPY) -c "from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker; \
	           assert 'gameproto' in [p.tapname for p in getPlugins(IServiceMaker)], 'twistd does not find the gameproto plugin'"
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/twistd --pidfile= -n gameproto $(ARGS)

# What the tests need beyond Python packages (servers, interpreters, npm packages).
test-deps: venv
	bash .ci/test-deps

# What bench/ needs beyond the tests' dependencies: the peers bench/chat_fanout.py
# compares gameproto with (python-socketio, Node's socket.io pinned by its lock file)
# and py-spy.
bench-deps: test-deps
	$(VPY) -m pip install --quiet -r bench/requirements.txt
	cd bench/peers/node && npm ci --no-audit --no-fund

# The web page's browser libraries are committed (gameproto/page/static/assets/vendor);
# this refreshes them from npm, pinned by web/package-lock.json (web/vendor-files.txt
# lists what is copied).
vendor:
	bash web/vendor.sh

# The screenshots of docs/web.md, taken by the browser tests.
screenshots: test-deps
	GAMEPROTO_SCREENSHOTS=$(CURDIR)/docs/web $(VPY) -m twisted.trial tests.test_web_browser

test: test-deps
	set -o pipefail; \
	$(VPY) -m twisted.trial $(TESTS) 2>&1 | tee .trial-output.log; \
	$(VPY) -m tests.summary .trial-output.log

clean:
	rm -rf $(VENV) _trial_temp* .trial-output.log twisted/plugins/dropin.cache *.egg-info tests/interop/node_modules tests/socketio-protocol/node_modules web/node_modules bench/peers/node/node_modules
