#!/usr/bin/env bash
# Molecule scenarios that make test runs, cheapest first; NAME:ORCHESTRATOR runs a scenario again
# with the other orchestrator, NAME@RELEASE on another Debian release's lab image
# (tools/molecule.sh). The rest of the support matrix is make test-matrix (docs/support.md).
set -euo pipefail
cd "$(dirname "$0")/../molecule"
# conformance: the sample when CONFORMANCE_SAMPLE=1 (make test), every file otherwise (make conformance).
for s in modules modules@bullseye modules@trixie chroot systemd default fleet fleet:master faults conformance; do
  n=${s%%@*}
  [[ -f ${n%%:*}/molecule.yml ]] && echo "$s"
done
exit 0
