# The one entry point: `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup demo test unit integration sanity lint bench clean

setup:
	@bash sandbox/setup.sh

demo: setup
	python sandbox/demo.py

# Two workers, a module each at a time: the upgrade tests spend much of their time waiting on hosts.
test: setup
	python -m pytest -n 2 --dist loadfile
	bash tests/sanity.sh
	ansible-lint

unit: setup
	python -m pytest tests/unit

integration: setup
	python -m pytest tests/integration

sanity: setup
	bash tests/sanity.sh

lint: setup
	ansible-lint

bench: setup
	python bench/db_bench.py
	python bench/s3_bench.py
	python bench/upgrade_bench.py

clean:
	rm -rf .build .pytest_cache tests/output demo-output
