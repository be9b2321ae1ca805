# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench clean

# Demo secrets for `make run` only: the test secrets of the sample deliveries in tests/fixtures,
# so the README's curl examples verify. Variables already set in the environment win.
# Never use these values for a real endpoint.
run: export FB_APP_SECRET ?= fb_test_app_secret_0123456789abcdef
run: export FB_VERIFY_TOKEN ?= hub-verify-token-example
run: export FB_PAGE_TOKEN ?= fb-page-token-example
run: export GOOGLE_KEY ?= gk_test_7c1e2b
run: export TYPEFORM_SECRET ?= tf_test_secret_9f8e7d
run: export ZAPIER_TOKEN ?= zap_test_token_5a4b3c
run: export UNBOUNCE_TOKEN ?= ub_test_token_1d2e3f
run: export JOTFORM_TOKEN  ?= jf_test_token_7g8h9i
run: export TALLY_SECRET ?= tally_test_secret_4c3b2a
run: export WEBFLOW_SECRET ?= wf_test_secret_8b7a6c
run: export ELEMENTOR_TOKEN ?= el_test_token_2k3l4m
run: export MAKE_TOKEN ?= mk_test_token_6n7p8q
run: export STANDARD_SECRET ?= whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXktMzJieXQ=
run: export HUBSPOT_CLIENT_SECRET ?= hs_test_client_secret_3e4f5a
run: export HUBSPOT_WEBHOOK_URL ?= http://127.0.0.1:8000/hooks/hubspot
run: export LINKEDIN_CLIENT_SECRET ?= li_test_client_secret_5d6e7f
run: export LINKEDIN_ACCESS_TOKEN ?= li-access-token-example
run: export HUBSPOT_CRM_WEBHOOK_URL ?= http://127.0.0.1:8000/hooks/hubspot-crm
run: export HUBSPOT_ACCESS_TOKEN ?= hs-private-app-token-example
run: export TIKTOK_APP_SECRET ?= tt_test_app_secret_6f7a8b

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/leadhub serve --config-dir mappings

lint: $(STAMP)
	$(BIN)/ruff check hub tests bench
	$(BIN)/ruff format --check hub tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite starts some hundreds of Python processes (hubs, sandboxes, store writers, CLI
# runs): each reads the hub's cached bytecode rather than compiling its modules again, even
# where the environment says to write none (PYTHONDONTWRITEBYTECODE; empty is unset).
# worksteal: a worker that runs out takes tests queued for another, so that tests of half a
# minute queued late do not leave one worker running alone at the end.
# Each of the six workers collects every test module, and on a fresh checkout each rewrote
# and compiled every module's asserts itself (11 s of CPU a worker; 4 s once pytest's cache
# holds them): one collection first writes that cache, and compileall the hub's bytecode,
# which the suite's first processes compiled side by side. (Its output is the main run's to
# show: a module that fails to collect fails there.)
unit: export PYTHONDONTWRITEBYTECODE =
unit: $(STAMP)
	$(BIN)/python -m compileall -q hub > /dev/null
	-$(BIN)/pytest --collect-only -qq -p no:xdist > /dev/null
	$(BIN)/pytest -n 6 --dist worksteal

# mypy runs beside the tests rather than before them: it is one process for 16 s, and the
# suite's start (compileall, the first collection) uses one core of two, its six workers
# about five sixths of both. Its report follows the tests'; either failing fails the target.
test: lint $(STAMP)
	@report=$$(mktemp); $(BIN)/mypy > "$$report" 2>&1 & typing=$$!; \
	$(MAKE) --no-print-directory unit; tests=$$?; \
	wait $$typing; typed=$$?; echo "$(BIN)/mypy"; cat "$$report"; rm -f "$$report"; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
