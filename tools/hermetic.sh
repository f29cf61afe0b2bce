#!/usr/bin/env bash
# Run a command with the host configuration that tests must never lean on hidden: in a private
# mount namespace, empty directories cover /etc/postfix, /etc/ansible and the invoking user's
# ~/.ansible, and ~/.ansible.cfg reads as empty. HOME is an empty tmpfs on build/hermetic-home, ANSIBLE_*
# settings from the caller's environment are dropped. A test that depends on such state then fails on every machine,
# not only on fresh ones. Usage: tools/hermetic.sh COMMAND [ARG...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "hermetic: $*" >&2; exit 1; }
(($#)) || die "usage: tools/hermetic.sh COMMAND [ARG...]"

if [[ ${MAILFLEET_HERMETIC:-} != inside ]]; then
  command -v unshare >/dev/null || die "unshare (util-linux) is not installed"
  user_home=$(getent passwd "$(id -u)" | cut -d: -f6)
  [[ -n $user_home ]] || user_home=$HOME
  # Root gets a plain mount namespace; anyone else a user namespace that keeps their own uid.
  ns=(--mount --propagation private)
  [[ $(id -u) -eq 0 ]] || ns=(--user --map-current-user "${ns[@]}")
  # None of the caller's Ansible settings survive; the two paths the tests need are this checkout's.
  unset_vars=()
  while IFS='=' read -r name _; do
    case $name in ANSIBLE_* | MOLECULE_*) unset_vars+=(-u "$name") ;; esac
  done < <(env)
  unshare "${ns[@]}" true \
    || die "could not enter a private mount namespace (unshare ${ns[*]}); the tests need one to hide host configuration"
  exec env "${unset_vars[@]}" ANSIBLE_COLLECTIONS_PATH="$root/build/collections" ANSIBLE_ROLES_PATH="$root/roles" \
    MAILFLEET_HERMETIC=inside MAILFLEET_USER_HOME="$user_home" unshare "${ns[@]}" -- "$0" "$@"
fi

# Mount only where the mounts cannot be seen: unshare made this process, so its parent is the one
# that ran us and must be in another mount namespace. Unreadable or equal: refuse.
own_ns=$(readlink /proc/self/ns/mnt) || die "cannot read this process's mount namespace"
parent_ns=$(readlink "/proc/$PPID/ns/mnt") || die "cannot read the mount namespace of the parent process ($PPID)"
[[ -n $own_ns && $own_ns != "$parent_ns" ]] \
  || die "MAILFLEET_HERMETIC=inside, but this is the caller's mount namespace; refusing to mount over host paths"
[[ -n ${MAILFLEET_USER_HOME:-} && -d $MAILFLEET_USER_HOME ]] || die "MAILFLEET_USER_HOME is not set to a directory"

hide_dir() {
  [[ -d $1 ]] || return 0
  mount -t tmpfs -o mode=0755,size=1m,nosuid,nodev mailfleet-hidden "$1" || die "could not hide $1"
}
hide_dir /etc/postfix
hide_dir /etc/ansible
hide_dir "$MAILFLEET_USER_HOME/.ansible"
if [[ -f $MAILFLEET_USER_HOME/.ansible.cfg ]]; then
  mount --bind /dev/null "$MAILFLEET_USER_HOME/.ansible.cfg" || die "could not hide ~/.ansible.cfg"
fi

# An empty home of its own each run (build/home keeps the other tools' caches, ansible-test's venvs);
# the namespace's own tmpfs, so concurrent runs never share one and nothing is left behind.
home=$root/build/hermetic-home
mkdir -p "$home"
mount -t tmpfs -o mode=0700,size=64m,nosuid,nodev mailfleet-home "$home" || die "could not mount an empty home on $home"
export HOME=$home
unset MAILFLEET_HERMETIC MAILFLEET_USER_HOME
exec "$@"
