#!/usr/bin/env bash
# A venv with one older ansible-core and the unit-test tools, for the support matrix
# (docs/support.md): .venv-core/<minor>. Skipped when its pins are unchanged.
# Usage: tools/core-venv.sh 2.17|2.18   (prints the venv's path last)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
minor=${1:?usage: tools/core-venv.sh MINOR (2.17 or 2.18)}
# The newest patch release of each minor supported by meta/runtime.yml.
case $minor in
  2.17) core=ansible-core==2.17.14 ;;
  2.18) core=ansible-core==2.18.19 ;;
  2.19) echo "$root/.venv"; exit 0 ;;  # the main venv (tools/requirements.txt)
  *) echo "core-venv: no pin for ansible-core $minor (known: 2.17, 2.18, 2.19)" >&2; exit 2 ;;
esac
venv=$root/.venv-core/$minor
req=$here/requirements-core.txt
stamp=$venv/.mailfleet-stamp
want=$( (cat "$req"; echo "$core") | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "core-venv: $core up to date" >&2
  echo "$venv"
  exit 0
fi
py=${PYTHON:-python3}
echo "core-venv: creating $venv ($core)" >&2
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q -r "$req" "$core" >&2
echo "$want" >"$stamp"
echo "$venv"
