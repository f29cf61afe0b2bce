#!/usr/bin/env bash
# Render the docs of every module, filter, test and role with ansible-doc, then lint the docs
# (antsibull-docs) and the changelog fragments (antsibull-changelog).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The tools' per-user state (~/.ansible, caches) stays in the checkout, run from make or not.
export HOME=$root/build/home
mkdir -p "$HOME"
cd "$root"
[[ -x $root/.venv/bin/ansible-doc ]] && PATH=$root/.venv/bin:$PATH
for tool in ansible-doc antsibull-docs antsibull-changelog; do
  command -v "$tool" >/dev/null || { echo "docs-check: $tool not found; run: make venv" >&2; exit 1; }
done
if [[ -z ${ANSIBLE_COLLECTIONS_PATH:-} ]]; then
  tools/collection-link.sh
  export ANSIBLE_COLLECTIONS_PATH=$root/build/collections
fi
ns=mailfleet.postfix
py=$(command -v python3)
failed=0
count=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "docs-check: FAIL $*"; failed=1; }

# Names of the plugins of one type: file names for modules; for filters and tests the names in the
# sidecar docs plus whatever ansible-doc lists, so a plugin file holding several is covered too.
names() {
  local type=$1 dir=$2
  case $type in
    module)
      for f in "$dir"/*.py; do
        [[ -e $f && ${f##*/} != __init__.py ]] && basename "$f" .py
      done
      ;;
    filter | test)
      "$py" - "$dir" <<'PY'
import pathlib, sys, yaml
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.y*ml")):
    doc = (yaml.safe_load(f.read_text()) or {}).get("DOCUMENTATION") or {}
    print(doc.get("name") or f.stem)
PY
      ansible-doc -t "$type" -l "$ns" --json 2>/dev/null \
        | "$py" -c 'import json,sys; [print(k.rsplit(".", 1)[1]) for k in json.load(sys.stdin)]'
      ;;
    role)
      for f in "$dir"/*/meta/argument_specs.y*ml; do
        [[ -e $f ]] && basename "$(dirname "$(dirname "$f")")"
      done
      ;;
  esac
}

# ansible-doc exits 0 even for a missing plugin ("[WARNING]: ... was not found") or an empty role,
# so judge by its output: something on stdout, nothing on stderr.
render() {
  local type=$1 name=$2 rc=0
  ansible-doc -t "$type" "$ns.$name" >"$tmp/out" 2>"$tmp/err" || rc=$?
  if ((rc != 0)) || [[ -s $tmp/err || ! -s $tmp/out ]]; then
    fail "ansible-doc -t $type $ns.$name (exit $rc$([[ -s $tmp/out ]] || echo ', no output'))"
    sed 's/^/    /' "$tmp/err"
  fi
}

# One ansible-doc call per type (each start costs ~1.5 s); only when it is not clean, render one
# by one to name the culprits.
render_all() {
  local type=$1 rc=0
  shift
  (($#)) || return 0
  ansible-doc -t "$type" --json "${@/#/$ns.}" >"$tmp/all.json" 2>"$tmp/all.err" || rc=$?
  if ((rc == 0)) && [[ ! -s $tmp/all.err ]] && "$py" - "$tmp/all.json" "${@/#/$ns.}" <<'PY'
import json, sys
docs = json.load(open(sys.argv[1]))
sys.exit(0 if all(docs.get(name) for name in sys.argv[2:]) else 1)
PY
  then
    return 0
  fi
  for name in "$@"; do render "$type" "$name"; done
}

for spec in module:plugins/modules filter:plugins/filter test:plugins/test role:roles; do
  type=${spec%%:*}
  mapfile -t list < <(names "$type" "${spec#*:}" | sort -u)
  render_all "$type" "${list[@]}"
  count=$((count + ${#list[@]}))
  echo "docs-check: ansible-doc $type: ${#list[@]} checked"
done

echo "docs-check: antsibull-docs lint-collection-docs --plugin-docs"
antsibull-docs lint-collection-docs --plugin-docs . || fail "antsibull-docs lint-collection-docs"

echo "docs-check: antsibull-changelog lint"
antsibull-changelog lint || fail "antsibull-changelog lint"

# Tables the docs carry from the code (docs/systemd.md: the chroot column).
echo "docs-check: generated tables"
"$root/.venv/bin/python" tools/chroot-table.py --check || fail "docs/systemd.md chroot table (run tools/chroot-table.py)"

((failed == 0)) || { echo "docs-check: FAILED (see above)"; exit 1; }
echo "docs-check: ok ($count plugin/role docs)"
