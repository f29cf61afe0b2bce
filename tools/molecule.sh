#!/usr/bin/env bash
# Run molecule scenarios one at a time (molecule test -s NAME), stop at the first failure and
# print timings. Usage: tools/molecule.sh [SCENARIO[:ORCHESTRATOR][@RELEASE]...]
# (default: every scenario, tools/scenarios.sh). fleet:master runs the fleet scenario with
# MAILFLEET_ORCHESTRATOR=master (postfix_orchestrator of its hosts); modules@bullseye runs the
# modules scenario on the lab image of that Debian release (lab/build-image.sh, RELEASE=...).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The tools' per-user state (~/.ansible, caches) stays in the checkout, run from make or not.
export HOME=$root/build/home
mkdir -p "$HOME"
cd "$root"
base=molecule/_shared/config.yml
# Container and network names are global: one molecule run per machine, across checkouts.
lock=${MAILFLEET_MOLECULE_LOCK:-/tmp/mailfleet-molecule.lock}

die() { echo "molecule: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (rootful podman boots systemd in the test hosts); try: sudo make molecule"
command -v podman >/dev/null || die "podman is not installed; run: make setup"
[[ -x $root/.venv/bin/molecule ]] && PATH=$root/.venv/bin:$PATH
command -v molecule >/dev/null || die "molecule not found; run: make venv"

scenarios=("$@")
((${#scenarios[@]})) || mapfile -t scenarios < <(tools/scenarios.sh)
((${#scenarios[@]})) || die "no scenarios found under molecule/"
name_of() { local n=${1%%@*}; echo "${n%%:*}"; }
orchestrator_of() { local n=${1%%@*}; [[ $n == *:* ]] && echo "${n#*:}"; return 0; }
release_of() { [[ $1 == *@* ]] && echo "${1#*@}"; return 0; }
for s in "${scenarios[@]}"; do
  n=$(name_of "$s")
  [[ -f molecule/$n/molecule.yml ]] || die "no scenario '$n' (molecule/$n/molecule.yml missing)"
  o=$(orchestrator_of "$s")
  [[ -z $o || $o == master || $o == systemd ]] || die "'$s': the orchestrator after ':' is master or systemd"
  [[ $(release_of "$s") =~ ^[a-z]*$ ]] || die "'$s': the release after '@' is a Debian codename"
done

if [[ -z ${ANSIBLE_COLLECTIONS_PATH:-} ]]; then
  tools/collection-link.sh
  export ANSIBLE_COLLECTIONS_PATH=$root/build/collections
fi
export ANSIBLE_ROLES_PATH=${ANSIBLE_ROLES_PATH:-$root/roles}
# Scenarios live in molecule/ at the root of a collection; say so instead of being warned.
export MOLECULE_GLOB='molecule/*/molecule.yml'

mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
if ! flock -n 9; then
  echo "molecule: waiting for another molecule run on this machine (lock $lock)"
  flock 9
fi

declare -A images=()
for s in "${scenarios[@]}"; do
  r=$(release_of "$s")
  [[ -z ${images[${r:-default}]:-} ]] || continue
  RELEASE=$r lab/build-image.sh
  images[${r:-default}]=$(RELEASE=$r lab/build-image.sh --ref)
done

results=()
total=$SECONDS
# A CI log shows only its tail: the failing tests are repeated there.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for s in "${scenarios[@]}"; do
  echo "molecule: === scenario $s ==="
  t=$SECONDS
  rc=0
  r=$(release_of "$s")
  setting=("MAILFLEET_LAB_IMAGE=${images[${r:-default}]}" "MAILFLEET_LAB_RELEASE=${r:-bookworm}")
  o=$(orchestrator_of "$s")
  [[ -z $o ]] || setting+=("MAILFLEET_ORCHESTRATOR=$o")
  # 9>&-: containers outlive molecule's processes and must not hold the lock.
  env "${setting[@]}" molecule --base-config "$base" test --scenario-name "$(name_of "$s")" 9>&- 2>&1 | tee "$log" || rc=$?
  results+=("$(printf '%-18s %-6s %4ds' "$s" "$([[ $rc == 0 ]] && echo ok || echo FAILED)" "$((SECONDS - t))")")
  ((rc == 0)) || break
done

echo "molecule: --- results ---"
printf 'molecule:   %s\n' "${results[@]}"
echo "molecule: total $((SECONDS - total)) s"
if ((rc != 0)); then
  # pytest's failure lines, without molecule's colours and frame, each cut to 400 characters.
  sed -E 's/\x1b\[[0-9;]*m//g; s/^ *│ ?//' "$log" | grep -E '^(FAILED|ERROR) [^ ]+::|^E   |timed out after' \
    | cut -c1-400 | tail -n 30 | sed 's/^/molecule: | /' || true
  die "scenario '$s' failed (exit $rc); its containers were destroyed by molecule"
fi
