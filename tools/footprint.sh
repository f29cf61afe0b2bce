#!/usr/bin/env bash
# Prove that a run wrote nothing outside the checkout: `begin` lists every file (type, inode, size,
# mtime, ctime, mode, owner, link target) in the places a test run could leak into, `end` lists them
# again and fails on any file added, removed or changed. Listings, not timestamps: a copy that keeps
# its old mtime (cp -a, tar) or a deletion is caught too. Podman's storage, /tmp and the apt and pip
# caches are allowed (README).
# Usage: tools/footprint.sh begin|end
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=$root/build/footprint
user_home=${MAILFLEET_USER_HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
# Whole trees: what Ansible, molecule, ansible-test, pip and ssh write to by default, system-wide
# Ansible and Postfix, and where this collection installs on a managed host (never the build host).
trees=("$user_home"/{.ansible,.ansible.cfg,.cache,.config,.local,.ssh} /etc/ansible /usr/share/ansible
  /etc/postfix /var/lib/postfix /var/spool/postfix /etc/systemd/system /etc/mailfleet-postfix
  /var/lib/mailfleet-postfix /usr/libexec/mailfleet-postfix /usr/local /opt /var/tmp)
# Only the entries directly inside: a new file in the home, a new /etc/postfix-NAME.
shallow=("$user_home" /etc)
# pip's cache; and the checkout itself, wherever it lies.
allowed=("$user_home/.cache/pip" "$root")

listing() {
  local prune=() existing=() dir
  for dir in "${allowed[@]}"; do prune+=(-path "$dir" -prune -o); done
  for dir in "${trees[@]}"; do [[ -e $dir || -L $dir ]] && existing+=("$dir"); done
  {
    # -H: a watched path that is a symbolic link is followed (its target is what gets written).
    find -H "${existing[@]}" -xdev "${prune[@]}" \( -type d -printf '%p d %m %u\n' \) -o \
      \( -printf '%p %y %i %s %T@ %C@ %m %u %l\n' \) 2>/dev/null || true
    find -H "${shallow[@]}" -mindepth 1 -maxdepth 1 "${prune[@]}" -printf '%p %y\n' 2>/dev/null || true
  } | LC_ALL=C sort -u
}

case ${1:-} in
  begin)
    mkdir -p "$state"
    listing >"$state/begin.txt"
    echo "footprint: $(wc -l <"$state/begin.txt") entries outside the checkout recorded"
    ;;
  end)
    [[ -f $state/begin.txt ]] || { echo "footprint: no $state/begin.txt; run 'tools/footprint.sh begin' first" >&2; exit 2; }
    listing >"$state/end.txt"
    mapfile -t changes < <(LC_ALL=C comm -3 "$state/begin.txt" "$state/end.txt" | sed 's/^\t/after:  /; t; s/^/before: /')
    if ((${#changes[@]})); then
      echo "footprint: FAILED: the run changed files outside the checkout (before: as it was; after: as it is now):" >&2
      printf 'footprint:   %s\n' "${changes[@]:0:40}" >&2
      ((${#changes[@]} <= 40)) || echo "footprint:   ... $((${#changes[@]} - 40)) more lines in $state/" >&2
      exit 1
    fi
    echo "footprint: ok (nothing added, removed or changed outside the checkout in ${trees[*]} ${shallow[*]})"
    ;;
  *)
    echo "usage: tools/footprint.sh begin|end" >&2
    exit 2
    ;;
esac
