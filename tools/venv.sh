#!/usr/bin/env bash
# Create or refresh the pinned tool venv. Skipped when tools/requirements.txt is unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/../.venv}
req=$here/requirements.txt
# containers.podman (molecule's podman driver needs it) comes from the ansible wheel on PyPI
# because Ansible Galaxy is unreachable from the build machines.
ansible_bundle=ansible==12.3.0
stamp=$venv/.mailfleet-stamp
want=$( (cat "$req"; echo "$ansible_bundle") | sha256sum | cut -d' ' -f1)

if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "venv: up to date ($venv)"
  exit 0
fi
py=${PYTHON:-python3}
command -v "$py" >/dev/null || { echo "venv: $py not found; install python3 and python3-venv" >&2; exit 1; }
echo "venv: creating $venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$req"

echo "venv: adding containers.podman from $ansible_bundle"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" -m pip download -q --no-deps -d "$tmp" "$ansible_bundle"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" - "$tmp"/ansible-*.whl "$site" <<'PY'
import sys, zipfile
wheel, site = sys.argv[1], sys.argv[2]
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefix)]
    zf.extractall(site, members)
print(f"venv: extracted {len(members)} files of containers.podman")
PY
echo "$want" > "$stamp"
echo "venv: ready"
