#!/usr/bin/env bash
# ansible-lint (production profile), ruff, mypy and vermin; runs them all and fails if any failed.
# Config: .ansible-lint and pyproject.toml.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The tools' per-user state (~/.ansible, caches) stays in the checkout, run from make or not.
export HOME=$root/build/home
mkdir -p "$HOME"
cd "$root"
[[ -x $root/.venv/bin/ansible-lint ]] && PATH=$root/.venv/bin:$PATH
for tool in ansible-lint ruff mypy vermin; do
  command -v "$tool" >/dev/null || { echo "lint: $tool not found; run: make venv" >&2; exit 1; }
done
# mypy reads the code through this link too (pyproject.toml), so refresh it even when the
# caller set ANSIBLE_COLLECTIONS_PATH.
tools/collection-link.sh
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$root/build/collections}

failed=()
step() {
  local name=$1 t=$SECONDS rc=0
  shift
  echo "lint: --- $name ---"
  "$@" || rc=$?
  if ((rc == 0)); then
    echo "lint: $name ok ($((SECONDS - t)) s)"
  else
    echo "lint: $name FAILED (exit $rc)"
    failed+=("$name")
  fi
}

color=()
[[ -t 1 ]] || color=(--nocolor)
step ansible-lint ansible-lint --profile production --offline "${color[@]}"
step ruff ruff check --output-format concise plugins tests
# Report paths as in the checkout, not through the build/collections link.
mypy_run() {
  mypy "$@" 2>&1 | sed "s#^build/collections/ansible_collections/mailfleet/postfix/##"
  return "${PIPESTATUS[0]}"
}
step mypy mypy_run
# Module code (modules, module_utils, the on-host generator and bridge) runs on the managed host's
# Python, 3.9 and newer (docs/support.md): vermin knows which library calls and syntax need more.
step vermin vermin --no-tips --violations --target=3.9- plugins

((${#failed[@]} == 0)) || { echo "lint: FAILED: ${failed[*]}"; exit 1; }
echo "lint: ok"
