#!/usr/bin/env bash
# ansible-test sanity, offline, on a copy of the checkout laid out as ansible_collections/mailfleet/postfix.
# Usage: tools/sanity.sh [--core MINOR] [--targets] [extra ansible-test sanity args, e.g. --test pep8]
#   --core 2.17   the ansible-test of that ansible-core (tools/core-venv.sh), not the one in .venv
#   --targets     then the compile and import tests on every target Python found (3.9 and newer)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The tools' per-user state (~/.ansible, caches) stays in the checkout, run from make or not.
export HOME=$root/build/home
mkdir -p "$HOME"
cd "$root"
core=2.19
targets=
while (($#)); do
  case $1 in
    --core) core=${2:?--core needs a minor version}; shift 2 ;;
    --targets) targets=1; shift ;;
    *) break ;;
  esac
done
venv=$(tools/core-venv.sh "$core")
[[ -x $venv/bin/ansible-test ]] && PATH=$venv/bin:$PATH
command -v ansible-test >/dev/null || { echo "sanity: ansible-test not found; run: make venv" >&2; exit 1; }
py=$venv/bin/python
command -v shellcheck >/dev/null \
  || echo "sanity: WARNING: shellcheck not on PATH; ansible-test will skip its shellcheck test" >&2

# ansible-test resolves cwd, so a symlinked collection (build/collections) is not enough: copy the
# files git would ship (tracked + untracked, not ignored; deleted ones skipped) into a real
# directory. tests/output survives so ansible-test can reuse its delegation venv.
copy=$root/build/sanity/$core/ansible_collections/mailfleet/postfix
mkdir -p "$copy"
find "$copy" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
[[ ! -d $copy/tests ]] || find "$copy/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
git ls-files -z -co --exclude-standard \
  | while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done \
  | tar --null -T - -cf - | tar -xf - -C "$copy"

# ansible-test bootstraps pip in each sanity venv with get-pip.py from a host this machine cannot
# reach; it uses a cached copy when present. The stand-in takes pip from ensurepip, then installs
# the pinned packages it is asked for from the package index.
pip_version=$("$py" - <<'PY'
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="3.11"))["pip"])
PY
) || { echo "sanity: could not ask ansible-test which pip it bootstraps (ansible-test internals changed?)" >&2; exit 1; }
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
marker='# mailfleet.postfix offline get-pip stand-in v1'
if [[ ! -f $get_pip ]] || [[ $(head -n1 "$get_pip") == '# mailfleet.postfix offline get-pip'* && $(head -n1 "$get_pip") != "$marker" ]]; then
  mkdir -p "$(dirname "$get_pip")"
  cat >"$get_pip.tmp" <<EOF
$marker
# Called as: python get_pip.py [pip options] PACKAGE==VERSION... [--no-setuptools] [--no-wheel]
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)
EOF
  mv "$get_pip.tmp" "$get_pip"
fi

cd "$copy"
# Without this ansible-test walks up from cwd, finds the checkout's .git and asks git for files
# under build/ (ignored), i.e. none. Pinning the content root makes it list the copy's files.
export ANSIBLE_TEST_CONTENT_ROOT=$copy
export PYTHONUNBUFFERED=1
# Hide pip's progress lines (ansible-test passes no PIP_* variables to its venvs, so pip can't be
# told to be quiet) and the machine pip config's warnings about local indexes; pip errors still show.
noise='^(Collecting |Processing /|Installing collected packages|Successfully installed|Looking in (indexes|links)'
noise+='|  (Downloading|Using cached|Obtaining) | +━|Requirement already satisfied'
noise+="|WARNING: Location 'file://.*' is ignored)"
run() {
  local start=$SECONDS rc=0
  echo "sanity: ansible-core $core: ansible-test sanity $*"
  ansible-test sanity --venv --color no "$@" 2>&1 | grep -Ev --line-buffered "$noise" || rc=${PIPESTATUS[0]}
  echo "sanity: ansible-core $core $1 $2: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start)) s"
  return "$rc"
}
run --python 3.11 "$@"
[[ -n $targets ]] || exit 0
# Module code runs on the managed host's Python (tests/config.yml: 3.9 and newer). ansible-test looks
# for pythonX.Y on PATH: link the real interpreters (pyenv shims are not).
bin=$root/build/pythons
mkdir -p "$bin"
found=()
for v in 3.9 3.10 3.12 3.13; do
  for cand in "/usr/bin/python$v" "${PYENV_ROOT:-/nonexistent}/versions/$v".*/bin/"python$v" \
    "$(getent passwd "$(id -u)" | cut -d: -f6)/.pyenv/versions/$v".*/bin/"python$v"; do
    if [[ -x $cand ]]; then ln -sfn "$cand" "$bin/python$v"; found+=("$v"); break; fi
  done
done
((${#found[@]})) || { echo "sanity: WARNING: no target Python (3.9, 3.10, 3.12, 3.13) found; only the lab hosts prove them" >&2; exit 0; }
export PATH=$bin:$PATH
for v in "${found[@]}"; do run --python "$v" --test compile --test import || exit 1; done
