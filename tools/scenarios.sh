#!/usr/bin/env bash
# Molecule scenarios that make test runs, cheapest first; NAME:ORCHESTRATOR runs a scenario again
# with the other orchestrator (tools/molecule.sh).
set -euo pipefail
cd "$(dirname "$0")/../molecule"
for s in modules chroot systemd default fleet fleet:master faults; do
  [[ -f ${s%%:*}/molecule.yml ]] && echo "$s"
done
exit 0
