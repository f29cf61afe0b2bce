#!/usr/bin/env bash
# ansible-test sanity, offline, on a copy of the checkout laid out as ansible_collections/mailfleet/postfix.
# Usage: tools/sanity.sh [extra ansible-test sanity args, e.g. --test pep8]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[[ -x $root/.venv/bin/ansible-test ]] && PATH=$root/.venv/bin:$PATH
command -v ansible-test >/dev/null || { echo "sanity: ansible-test not found; run: make venv" >&2; exit 1; }
py=$(command -v python3)
command -v shellcheck >/dev/null \
  || echo "sanity: WARNING: shellcheck not on PATH; ansible-test will skip its shellcheck test" >&2

# ansible-test resolves cwd, so a symlinked collection (build/collections) is not enough: copy the
# files git would ship (tracked + untracked, not ignored; deleted ones skipped) into a real
# directory. tests/output survives so ansible-test can reuse its delegation venv.
copy=$root/build/sanity/ansible_collections/mailfleet/postfix
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
start=$SECONDS
rc=0
ansible-test sanity --venv --python 3.11 --color no "$@" 2>&1 \
  | grep -Ev --line-buffered "$noise" || rc=${PIPESTATUS[0]}
echo "sanity: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - start)) s"
exit "$rc"
