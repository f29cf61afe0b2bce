#!/usr/bin/env bash
# Molecule scenarios in the order make test runs them (cheapest first).
set -euo pipefail
cd "$(dirname "$0")/../molecule"
order=(modules chroot systemd default fleet faults)
for s in "${order[@]}"; do [[ -f $s/molecule.yml ]] && echo "$s"; done
for d in */molecule.yml; do
  s=${d%/molecule.yml}
  [[ " ${order[*]} " == *" $s "* ]] || echo "$s"
done
exit 0
