# mailfleet.postfix — the two commands that matter:
#   make lab    build/reuse the lab image, start the fleet, run playbooks/site.yml, send a probe mail, print the status table
#   make test   unit tests, sanity, lint, docs, the collection as users install it, the molecule scenarios
# and, before a release:
#   make test-matrix   what make test leaves out of the support matrix (docs/support.md)
#   make conformance   master(8) vs master-less on every corpus master.cf (build/conformance/report.md)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
# The tools' per-user state (Ansible's ~/.ansible, ansible-test's venvs, molecule's and pip's
# caches) stays in the checkout: a run never shadows what the user installed in their own home.
export HOME := $(CURDIR)/build/home
$(shell mkdir -p "$(HOME)")

SCENARIOS ?= $(shell tools/scenarios.sh)
# make test runs the conformance scenario on a sample; make conformance on every file (docs/conformance.md).
CONFORMANCE_SAMPLE ?= 1
export CONFORMANCE_SAMPLE
# The part of the support matrix make test runs (docs/support.md); make test-matrix runs the rest.
CORES ?= 2.17
MATRIX_CORES ?= 2.18
MATRIX_SCENARIOS ?= systemd@bullseye systemd@trixie

.PHONY: help setup venv collection image images lab lab-down units units-cores sanity sanity-cores lint \
	docs-check installed molecule test test-matrix conformance footprint-begin footprint-end bench clean

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

images: setup       ## lab images of every Debian release the matrix tests
	lab/build-image.sh
	RELEASE=bullseye lab/build-image.sh
	RELEASE=trixie lab/build-image.sh

lab: setup venv collection image  ## the lab: site.yml on a fleet of containers, a probe mail, the status table
	lab/lab.sh up

lab-down:
	lab/lab.sh down

# Host configuration (/etc/postfix, ~/.ansible, ...) is hidden from the unit tests (tools/hermetic.sh).
units: setup venv
	tools/hermetic.sh $(PY) -m pytest -q tests/unit

units-cores: setup
	@for core in $(CORES); do \
	  echo "units: --- ansible-core $$core ---"; \
	  venv=$$(tools/core-venv.sh $$core) && tools/hermetic.sh "$$venv/bin/python" -m pytest -q tests/unit || exit 1; \
	done

sanity: venv
	tools/sanity.sh --targets

sanity-cores: venv
	@for core in $(CORES); do tools/sanity.sh --core $$core || exit 1; done

lint: venv collection
	tools/lint.sh

docs-check: venv collection
	tools/docs-check.sh

installed: setup venv image  ## build the tarball, install it elsewhere, run a play from that copy
	tools/installed.sh

molecule: setup venv collection images
	tools/molecule.sh $(SCENARIOS)

footprint-begin:
	tools/footprint.sh begin

footprint-end:
	tools/footprint.sh end

# Install steps first, then the stamp: everything after it must write only inside the checkout.
test: setup venv collection images footprint-begin units units-cores sanity sanity-cores lint docs-check \
	installed molecule footprint-end

test-matrix: setup venv collection images
	$(MAKE) units-cores sanity-cores CORES="$(MATRIX_CORES)"
	tools/molecule.sh $(MATRIX_SCENARIOS)

conformance: setup venv collection image
	CONFORMANCE_SAMPLE=0 tools/molecule.sh conformance

bench: setup venv collection image
	bench/run.sh

clean:
	rm -rf build tests/output .pytest_cache .hypothesis
