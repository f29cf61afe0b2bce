# mailfleet.postfix — the two commands that matter:
#   make lab    build/reuse the lab image, start the fleet, run playbooks/site.yml, send a probe mail
#   make test   unit tests, sanity, lint, docs, then every molecule scenario
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles

SCENARIOS ?= $(shell tools/scenarios.sh)

.PHONY: help setup venv collection image lab lab-down units sanity lint docs-check molecule test bench clean

help:
	@sed -n 's/^#   //p' Makefile

setup:              ## host packages (podman, runc, debootstrap, postfix binaries) and podman config
	lab/setup-host.sh

venv:               ## pinned Python tools in .venv
	tools/venv.sh "$(VENV)"

collection: venv    ## this checkout, installed where ansible finds mailfleet.postfix
	tools/collection-link.sh

image: setup
	lab/build-image.sh

lab: setup venv collection image
	lab/lab.sh up

lab-down:
	lab/lab.sh down

units: setup venv
	$(PY) -m pytest -q tests/unit

sanity: venv
	tools/sanity.sh

lint: venv collection
	tools/lint.sh

docs-check: venv collection
	tools/docs-check.sh

molecule: setup venv collection image
	tools/molecule.sh $(SCENARIOS)

test: units sanity lint docs-check molecule

bench: setup venv collection image
	bench/run.sh

clean:
	rm -rf build tests/output .pytest_cache .hypothesis
