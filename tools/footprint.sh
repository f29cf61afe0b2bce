#!/usr/bin/env bash
# Prove that a run wrote nothing outside the checkout: `begin` marks the time, `end` lists every
# file created or changed since then in the places a test run could leak into (the invoking user's
# home, system-wide Ansible and Postfix directories, /usr/local, /opt, /var/tmp) and fails if
# there is any. Podman's storage, /tmp and the apt and pip caches are allowed (README).
# Usage: tools/footprint.sh begin|end
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
stamp=$root/build/footprint.stamp
user_home=${MAILFLEET_USER_HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
# In the home: what Ansible, molecule, ansible-test, pip and ssh write to by default.
watched=("$user_home"/{.ansible,.ansible.cfg,.cache,.config,.local,.ssh} /etc/ansible /usr/share/ansible /etc/postfix /var/lib/postfix /var/spool/postfix
  /usr/local /opt /var/tmp)
# pip's cache, and what the machine's own tools (not ours) keep there while we run.
allowed=("$user_home/.cache/pip")

case ${1:-} in
  begin)
    mkdir -p "$(dirname "$stamp")"
    : >"$stamp"
    ;;
  end)
    [[ -f $stamp ]] || { echo "footprint: no $stamp; run 'tools/footprint.sh begin' first" >&2; exit 2; }
    prune=()
    for dir in "$root" "${allowed[@]}"; do prune+=(-path "$dir" -prune -o); done
    existing=()
    for dir in "${watched[@]}"; do [[ -e $dir ]] && existing+=("$dir"); done
    mapfile -t leaks < <(find "${existing[@]}" -xdev -mindepth 1 "${prune[@]}" -newer "$stamp" \( ! -type d -o -empty \) -print 2>/dev/null | sort)
    if ((${#leaks[@]})); then
      echo "footprint: FAILED: ${#leaks[@]} file(s) outside the checkout were written during the run:" >&2
      printf 'footprint:   %s\n' "${leaks[@]:0:40}" >&2
      exit 1
    fi
    echo "footprint: ok (nothing written outside the checkout in ${watched[*]})"
    ;;
  *)
    echo "usage: tools/footprint.sh begin|end" >&2
    exit 2
    ;;
esac
